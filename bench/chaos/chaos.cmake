# The short chaos run (bench/chaos/run --duration 10) as a ctest test, label `chaos`: this
# build's forkd and forkctl under killed, stopped, reloaded and scaled workers, a flooded
# control socket and, as root (CI), a hostile local user (uid 65534 through setpriv).
# Included from tests/CMakeLists.txt; needs python3 (stdlib only).
find_package(Python3 COMPONENTS Interpreter)
# Also in the sanitizer build, where any report fails it (the master-RSS bound is not checked
# there: ASan's quarantine holds freed memory on purpose).
if(Python3_Interpreter_FOUND)
  add_test(NAME chaos_short
    COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/bench/chaos/run --duration 10
      --forkd $<TARGET_FILE:forkd> --forkctl $<TARGET_FILE:forkctl>)
  # Generous: start-up, 10 s of chaos, up to 60 s to settle, and a slow sanitizer build.
  set_tests_properties(chaos_short PROPERTIES LABELS chaos TIMEOUT 240 RUN_SERIAL TRUE)
elseif(NOT Python3_Interpreter_FOUND)
  message(STATUS "python3 not found: the chaos tests are not defined")
endif()

# Hostile control requests, one per fresh daemon: each case reproduces a way one request line
# could crash the master or make it act on the wrong worker (bench/chaos/hostile --list).
if(Python3_Interpreter_FOUND)
  add_test(NAME chaos_hostile_requests
    COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/bench/chaos/hostile
      --forkd $<TARGET_FILE:forkd> --forkctl $<TARGET_FILE:forkctl>)
  set_tests_properties(chaos_hostile_requests PROPERTIES LABELS chaos TIMEOUT 240)
endif()
