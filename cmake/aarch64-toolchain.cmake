# Cross-compiling for aarch64 Linux with Debian's g++-aarch64-linux-gnu; the
# binaries are static so that qemu-aarch64 runs them without an aarch64 sysroot.
#   cmake -S . -B build/aarch64 --toolchain cmake/aarch64-toolchain.cmake
# Such a build is kernels-only (NIBBLE_KERNELS_ONLY): the kernel tests run
# under qemu-aarch64 through ctest.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# Header-only packages (doctest) come from the host's /usr/lib/cmake.
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# Plain ARMv8-A: only kernels/neon/*_dotprod.cpp enables SDOT (by pragma), so
# the tests must also run on a CPU without it.
set(CMAKE_CXX_FLAGS_INIT "-march=armv8-a")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
# ... so FindOpenMP must name the static archives of the libraries it links.
foreach(lib gomp pthread)
    execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=lib${lib}.a
                    OUTPUT_VARIABLE archive OUTPUT_STRIP_TRAILING_WHITESPACE)
    set(OpenMP_${lib}_LIBRARY "${archive}" CACHE FILEPATH "static lib${lib} for aarch64")
endforeach()
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)
