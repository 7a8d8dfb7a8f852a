// spdlog's compiled part, built into forkd when it is linked statically (cmake/libraries.cmake):
// the headers only declare it under SPDLOG_COMPILED_LIB, and Debian ships it only as a shared
// library.
#include <spdlog/common-inl.h>
#include <spdlog/details/backtracer-inl.h>
#include <spdlog/details/log_msg-inl.h>
#include <spdlog/details/log_msg_buffer-inl.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/details/os-inl.h>
#include <spdlog/details/periodic_worker-inl.h>
#include <spdlog/details/registry-inl.h>
#include <spdlog/logger-inl.h>
#include <spdlog/pattern_formatter-inl.h>
#include <spdlog/sinks/ansicolor_sink-inl.h>
#include <spdlog/sinks/base_sink-inl.h>
#include <spdlog/sinks/sink-inl.h>
#include <spdlog/spdlog-inl.h>

// forkd's sink (common/log.cpp) derives from it; the registry's default colour console sink
// is instantiated by registry-inl.h itself.
template class spdlog::sinks::base_sink<spdlog::details::null_mutex>;
