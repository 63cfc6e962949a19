# Warnings for the project's own targets (not for third-party headers).
function(lode_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                                           -Wno-sign-conversion -Werror=return-type
                                           -Werror=format-security)
endfunction()
