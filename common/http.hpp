// HTTP/1.x request parsing and response serialisation: the one implementation behind the
// worker's built-in server (worker/http_server) and the master's metrics endpoint
// (daemon/metrics_server). Pure: works on byte strings only, with every size capped before
// anything is kept; it never touches sockets, timers or an io_context (the servers do the I/O).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace forkd::common {

struct HttpLimits {
  std::size_t max_head_bytes =
      std::size_t{16} * 1024;  // request line + headers (+ leading blank lines)
  std::size_t max_body_bytes = std::size_t{1024} * 1024;  // Content-Length cap
};

struct HttpHeader {
  std::string name;
  std::string value;
};

struct HttpRequest {
  std::string method;
  std::string target;          // as sent: "/compute?n=10"
  std::string path;            // "/compute" (not percent-decoded)
  std::string query;           // "n=10" (without '?'), "" when absent
  unsigned version_minor = 1;  // HTTP/1.<minor>
  std::vector<HttpHeader> headers;
  std::string body;
  bool keep_alive = true;  // after Connection and the version's default

  // First header with that name (case-insensitive), or nullptr.
  [[nodiscard]] const std::string* header(std::string_view name) const noexcept;
};

enum class ParseStatus { incomplete, complete, error };

struct ParseResult {
  ParseStatus status = ParseStatus::incomplete;
  std::size_t consumed = 0;  // complete: bytes the request occupied at the buffer's start
  int error_status = 0;      // error: the status to answer with (400, 413, 431, 501, 505)
  std::string error;         // error: why, for a log line
};

// Parses the request at the start of `buffer` into `out` (overwritten when complete). Call
// again with more bytes while it says incomplete; an error means: answer error_status, close.
// Bare "\n" line ends are accepted as well as "\r\n"; blank lines before a request are skipped.
// The target must be origin-form ("/p?q"), absolute-form ("http://h/p"), "*", or for CONNECT
// authority-form. Transfer-Encoding (chunked) request bodies are not supported: 501.
[[nodiscard]] ParseResult parse_request(std::string_view buffer, const HttpLimits& limits,
                                        HttpRequest& out);

// The same up to the blank line that ends the head: the body is neither framed nor read
// (Content-Length, Transfer-Encoding and max_body_bytes are not looked at), `consumed` is the
// head's end and `out.body` is empty. For a server that answers one request and closes.
[[nodiscard]] ParseResult parse_request_head(std::string_view buffer, const HttpLimits& limits,
                                             HttpRequest& out);

// The first value of `name` in an application/x-www-form-urlencoded query, percent- and
// '+'-decoded; nullopt when absent or badly encoded.
[[nodiscard]] std::optional<std::string> query_param(std::string_view query, std::string_view name);

struct HttpResponse {
  int status = 200;
  std::vector<HttpHeader> headers;  // Content-Length and Connection are added by serialisation
  std::string body;

  // Replaces the header of that name (case-insensitive) or adds it.
  void set_header(std::string_view name, std::string value);
};

[[nodiscard]] std::string_view reason_phrase(int status) noexcept;

// The response's bytes as an HTTP/1.1 message. `head_request`: Content-Length of the body but
// no body. `keep_alive` decides the Connection header (HTTP/1.0 clients need an explicit
// keep-alive). Content-Length and Connection given by the application are ignored.
[[nodiscard]] std::string serialize_response(const HttpResponse& response, bool head_request,
                                             bool keep_alive, unsigned version_minor);

// Case-insensitive ASCII comparison, as header names and connection tokens need.
[[nodiscard]] bool iequals(std::string_view a, std::string_view b) noexcept;

}  // namespace forkd::common
