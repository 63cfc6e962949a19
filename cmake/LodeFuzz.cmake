# What a fuzz target links beyond the dataplane and control-plane libraries,
# the same for the libFuzzer binary (tests/fuzz) and its corpus replay
# (tests): the flow engine's script builds its runtime as lodestone does and
# the pcap reader is lodectl's (lode_tools); OCSP responses are built and
# signed with the tests' in-memory PKI.
function(lode_fuzz_deps target name)
  target_link_libraries(${target} PRIVATE lode_dataplane lode_controlplane)
  if(name STREQUAL "flow_engine_fuzz" OR name STREQUAL "pcap_fuzz")
    target_link_libraries(${target} PRIVATE lode_tools)
  endif()
  if(name STREQUAL "ocsp_fuzz")
    target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/tests/support/test_pki.cc)
  endif()
endfunction()
