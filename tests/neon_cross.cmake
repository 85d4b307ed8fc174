# NEON kernels under emulation: cross-compile for aarch64 and run under
# qemu-aarch64 (with and without the dotprod extension). Skipped (exit 77) when
# the cross toolchain or qemu is missing.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
    add_test(NAME test_kernels_matmul_neon_qemu
             COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/run_neon_tests.sh ${CMAKE_SOURCE_DIR}
                     ${CMAKE_BINARY_DIR}/neon_cross)
    set_tests_properties(test_kernels_matmul_neon_qemu PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900)
endif()
