# Installation layout and the Debian package (issue 9).
#
#   cmake --install build/release --prefix /usr     the layout below, on this machine
#   cd build/release && cpack -G DEB                lodestone_VERSION_ARCH.deb
#
# Prefix-relative (GNUInstallDirs; the package's prefix is /usr):
#   sbin/lodestone, sbin/lodectl                    the daemon and its admin CLI (section 8)
#   share/man/man8/lodestone.8.gz, lodectl.8.gz, share/man/man5/lodestone.conf.5.gz
#   share/doc/lodestone/                            README.md, copyright, changelog.gz, examples/
#                                                   (the full edge example, the dpdk drop-in, the
#                                                   Grafana dashboard)
# System paths, whatever the prefix (they are where systemd and logrotate look):
#   /lib/systemd/system/lodestone.service           ExecStart names PREFIX/sbin/lodestone
#   /etc/lodestone/lodestone.toml                   examples/etc-lodestone.toml; a conffile in the
#                                                   package; `cmake --install` never replaces one
#                                                   that is there
#   /etc/lodestone/sites/                           the certificate directory that config serves
#   /etc/logrotate.d/lodestone                      the access log's rotation (a conffile)
# lodeload and lode-backend (load generator, demo/test backend) stay in the
# build tree. Maintainer scripts: tools/debian/ (a `lodestone` system user,
# systemd enable/start/stop guarded by a running systemd).
include(GNUInstallDirs)

set(LODE_INSTALL_SYSCONFDIR "/etc" CACHE PATH "Where lodestone/ and logrotate.d/ are installed (absolute)")
set(LODE_INSTALL_UNITDIR "/lib/systemd/system" CACHE PATH "Where the systemd unit is installed (absolute)")
set(LODE_PACKAGE_CONTACT "Lodestone maintainers <maintainers@lodestone.example>" CACHE STRING
    "The Maintainer field of the .deb")

set(LODE_DOCDIR ${CMAKE_INSTALL_DATAROOTDIR}/doc/lodestone)

install(TARGETS lodestone lodectl RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})

# Man pages (tools/man/, the version in .TH from project()), compressed as
# Debian wants them (gzip -n: no name or time stamp, so the package is
# reproducible).
set(LODE_MAN_PAGES lodestone.8 lodectl.8 lodestone.conf.5)
set(LODE_MAN_GZ)
foreach(page IN LISTS LODE_MAN_PAGES)
  set(src ${PROJECT_BINARY_DIR}/man/${page})
  set(out ${PROJECT_BINARY_DIR}/man/${page}.gz)
  configure_file(${PROJECT_SOURCE_DIR}/tools/man/${page} ${src} @ONLY)
  add_custom_command(OUTPUT ${out}
                     COMMAND sh -c "gzip -9n -c \"$1\" >\"$2\"" sh ${src} ${out}
                     DEPENDS ${src} VERBATIM)
  list(APPEND LODE_MAN_GZ ${out})
  string(REGEX REPLACE ".*\\.([0-9])$" "\\1" section ${page})
  install(FILES ${out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
endforeach()

# A native package's changelog, as Debian policy 12.7 wants it
# (/usr/share/doc/PACKAGE/changelog.gz).
# The date is the configure time, or $SOURCE_DATE_EPOCH when set.
string(TIMESTAMP LODE_CHANGELOG_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
file(WRITE ${PROJECT_BINARY_DIR}/packaging/changelog
     "lodestone (${PROJECT_VERSION}) unstable; urgency=medium\n\n"
     "  * Built from source with CMake and CPack.\n\n"
     " -- ${LODE_PACKAGE_CONTACT}  ${LODE_CHANGELOG_DATE}\n")
add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/packaging/changelog.gz
                   COMMAND sh -c "gzip -9n -c \"$1\" >\"$2\"" sh ${PROJECT_BINARY_DIR}/packaging/changelog
                           ${PROJECT_BINARY_DIR}/packaging/changelog.gz
                   DEPENDS ${PROJECT_BINARY_DIR}/packaging/changelog VERBATIM)
add_custom_target(lode_package_files ALL DEPENDS ${LODE_MAN_GZ} ${PROJECT_BINARY_DIR}/packaging/changelog.gz)

install(FILES README.md tools/debian/copyright ${PROJECT_BINARY_DIR}/packaging/changelog.gz DESTINATION ${LODE_DOCDIR})
install(FILES examples/lodestone.toml tools/systemd/lodestone-dpdk.conf tools/grafana/lodestone-dashboard.json
        DESTINATION ${LODE_DOCDIR}/examples)

# The unit names /usr/sbin/lodestone; another prefix gets its own path
# written in. CMAKE_INSTALL_PREFIX is read when installing, so `--prefix`
# and CPack's /usr both count.
install(CODE "
  set(unit_src \"${PROJECT_SOURCE_DIR}/tools/systemd/lodestone.service\")
  set(unit_tmp \"${PROJECT_BINARY_DIR}/packaging/lodestone.service\")
  file(READ \"\${unit_src}\" unit)
  string(REPLACE \"/usr/sbin/lodestone\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SBINDIR}/lodestone\" unit \"\${unit}\")
  file(WRITE \"\${unit_tmp}\" \"\${unit}\")
  file(INSTALL DESTINATION \"${LODE_INSTALL_UNITDIR}\" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ FILES \"\${unit_tmp}\")
")

install(FILES tools/logrotate/lodestone DESTINATION ${LODE_INSTALL_SYSCONFDIR}/logrotate.d)
install(DIRECTORY DESTINATION ${LODE_INSTALL_SYSCONFDIR}/lodestone/sites)
# The configuration: installed when absent, never over an operator's file.
install(CODE "
  set(conf \"\$ENV{DESTDIR}${LODE_INSTALL_SYSCONFDIR}/lodestone/lodestone.toml\")
  if(EXISTS \"\${conf}\")
    message(STATUS \"Kept: \${conf} (the shipped one is ${PROJECT_SOURCE_DIR}/examples/etc-lodestone.toml)\")
  else()
    file(INSTALL DESTINATION \"${LODE_INSTALL_SYSCONFDIR}/lodestone\" TYPE FILE RENAME lodestone.toml
         PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
         FILES \"${PROJECT_SOURCE_DIR}/examples/etc-lodestone.toml\")
  endif()
")

# --- CPack: the .deb ---------------------------------------------------------
configure_file(${PROJECT_SOURCE_DIR}/tools/debian/conffiles.in ${PROJECT_BINARY_DIR}/packaging/conffiles @ONLY)
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME lodestone)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${LODE_PACKAGE_CONTACT}")
set(CPACK_PACKAGE_VENDOR "Lodestone")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "SNI-routing TLS front door")
# One string (CPack puts the summary line above it).
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "Lodestone reads each connection's TLS ClientHello on one address and port,
routes by the server name (SNI), and terminates TLS with that name's
certificate (relaying to a backend pool), passes the encrypted stream
through untouched, or rejects it. io_uring workers, kernel TLS where the
kernel offers it, an optional DPDK front, OCSP stapling, hot reloads, an
admin CLI (lodectl) and Prometheus metrics.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The libraries come from dpkg-shlibdeps (dpkg-dev): OpenSSL, liburing, toml++,
# libcurl, DPDK's librte-*; adduser for postinst's system user.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
# dpdk: the poll-mode drivers the dpdk front loads (net_tap, virtio_user, ...);
# bird2: [bgp]; logrotate: an access log file.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "dpdk, bird2, logrotate")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_BINARY_DIR}/packaging/conffiles
    ${PROJECT_SOURCE_DIR}/tools/debian/postinst
    ${PROJECT_SOURCE_DIR}/tools/debian/prerm
    ${PROJECT_SOURCE_DIR}/tools/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
