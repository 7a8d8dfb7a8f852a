// Whether the tests, and the forkd they start, are built with a sanitizer. Tests that exhaust a
// process's file descriptors cannot run there: the sanitizers' runtime opens a pipe to probe
// memory (e.g. for UBSan's vptr check) and reports spuriously when none is left.
#pragma once

namespace forkd::test {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitizerBuild = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer) || \
    __has_feature(thread_sanitizer)
inline constexpr bool kSanitizerBuild = true;
#else
inline constexpr bool kSanitizerBuild = false;
#endif
#else
inline constexpr bool kSanitizerBuild = false;
#endif

}  // namespace forkd::test
