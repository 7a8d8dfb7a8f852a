#include "common/http.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>

namespace forkd::common {

namespace {

constexpr char to_lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// RFC 9110 tchar: the characters of methods, header names and tokens.
constexpr bool is_tchar(char c) noexcept {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
  return kExtra.find(c) != std::string_view::npos;
}

constexpr bool is_token(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

constexpr bool is_ows(char c) noexcept {
  return c == ' ' || c == '\t';
}

// Header values may carry any byte but controls (HTAB excepted): a bare CR or NUL inside a
// value is a classic request-smuggling vector.
constexpr bool is_value_char(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return c == '\t' || (u >= 0x20 && u != 0x7f);
}

// Request targets: visible ASCII only (no spaces, no controls, no raw UTF-8).
constexpr bool is_target_char(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u < 0x7f;
}

std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

ParseResult fail(int status, std::string why) {
  ParseResult r;
  r.status = ParseStatus::error;
  r.error_status = status;
  r.error = std::move(why);
  return r;
}

// RFC 9112 3.2: origin-form ("/p?q"), asterisk-form ("*"), absolute-form ("http://h/p"), and
// authority-form ("host:443") for CONNECT only; anything else gets 400.
bool has_target_form(std::string_view method, std::string_view target) noexcept {
  if (target.front() == '/' || target == "*") return true;
  if (target.find("://") != std::string_view::npos) return true;
  return method == "CONNECT";
}

struct RequestLine {
  std::string_view method;
  std::string_view target;
  unsigned minor = 1;
};

// "METHOD SP target SP HTTP/1.x"; returns the error status or 0.
int parse_request_line(std::string_view line, RequestLine& out, std::string& why) {
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    why = "malformed request line";
    return 400;
  }
  out.method = line.substr(0, sp1);
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_token(out.method)) {
    why = "malformed method";
    return 400;
  }
  if (out.target.empty() || !std::all_of(out.target.begin(), out.target.end(), is_target_char) ||
      !has_target_form(out.method, out.target)) {
    why = "malformed request target";
    return 400;
  }
  const bool shaped = version.size() == 8 && version.substr(0, 5) == "HTTP/" && version[5] >= '0' &&
                      version[5] <= '9' && version[6] == '.' && version[7] >= '0' &&
                      version[7] <= '9';
  if (!shaped) {
    why = "malformed HTTP version";
    return 400;
  }
  if (version[5] != '1') {
    why = "unsupported HTTP version";
    return 505;
  }
  out.minor = static_cast<unsigned>(version[7] - '0');
  return 0;
}

// Splits an origin-form ("/p?q"), absolute-form ("http://h/p?q") or "*" target.
void split_target(std::string_view target, std::string& path, std::string& query) {
  if (const std::size_t scheme = target.find("://");
      scheme != std::string_view::npos && target.front() != '/') {
    const std::size_t slash = target.find('/', scheme + 3);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  if (const std::size_t q = target.find('?'); q != std::string_view::npos) {
    path.assign(target.substr(0, q));
    query.assign(target.substr(q + 1));
  } else {
    path.assign(target);
    query.clear();
  }
  if (const std::size_t hash = query.find('#'); hash != std::string::npos) query.resize(hash);
}

bool connection_has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const std::size_t comma = value.find(',');
    if (iequals(trim_ows(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  const char l = to_lower(c);
  if (l >= 'a' && l <= 'f') return l - 'a' + 10;
  return -1;
}

std::optional<std::string> form_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex_value(s[i + 1]);
      const int lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return to_lower(x) == to_lower(y);
         });
}

const std::string* HttpRequest::header(std::string_view name) const noexcept {
  for (const HttpHeader& h : headers) {
    if (iequals(h.name, name)) return &h.value;
  }
  return nullptr;
}

namespace {

ParseResult complete_at(std::size_t consumed) {
  ParseResult r;
  r.status = ParseStatus::complete;
  r.consumed = consumed;
  return r;
}

// The request line and headers into `request` (with keep_alive); complete means the head is
// whole and `consumed` is where it ends, which is where a body would start.
ParseResult read_head(std::string_view buffer, const HttpLimits& limits, HttpRequest& request) {
  // The head is re-scanned from the start on every call: it is capped at max_head_bytes, so
  // this stays cheap and keeps the parser stateless.
  std::size_t pos = 0;
  while (pos < buffer.size() && (buffer[pos] == '\n' || buffer[pos] == '\r')) {
    // The cap first: the answer must not depend on how the bytes were split into reads.
    if (pos >= limits.max_head_bytes) return fail(431, "request head too large");
    if (buffer[pos] == '\r' && pos + 1 < buffer.size() && buffer[pos + 1] != '\n') {
      return fail(400, "stray CR before the request line");
    }
    ++pos;
  }
  if (pos > limits.max_head_bytes) return fail(431, "request head too large");

  RequestLine request_line;
  bool have_request_line = false;
  std::size_t head_end = 0;
  for (;;) {
    const std::size_t nl = buffer.find('\n', pos);
    if (nl == std::string_view::npos) {
      if (buffer.size() > limits.max_head_bytes) return fail(431, "request head too large");
      return {};
    }
    if (nl + 1 > limits.max_head_bytes) return fail(431, "request head too large");
    std::string_view line = buffer.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find('\r') != std::string_view::npos) return fail(400, "stray CR in request head");

    if (!have_request_line) {
      std::string why;
      if (const int status = parse_request_line(line, request_line, why); status != 0) {
        return fail(status, std::move(why));
      }
      have_request_line = true;
      continue;
    }
    if (line.empty()) {
      head_end = pos;
      break;
    }
    if (is_ows(line.front())) return fail(400, "obsolete header line folding");
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return fail(400, "header line without ':'");
    const std::string_view name = line.substr(0, colon);
    if (!is_token(name)) return fail(400, "malformed header name");
    const std::string_view value = trim_ows(line.substr(colon + 1));
    if (!std::all_of(value.begin(), value.end(), is_value_char)) {
      return fail(400, "control character in header value");
    }
    request.headers.push_back({std::string(name), std::string(value)});
  }

  request.method.assign(request_line.method);
  request.target.assign(request_line.target);
  request.version_minor = request_line.minor;
  split_target(request_line.target, request.path, request.query);

  const std::string* connection = request.header("Connection");
  if (request.version_minor == 0) {
    request.keep_alive = connection != nullptr && connection_has_token(*connection, "keep-alive");
  } else {
    request.keep_alive = connection == nullptr || !connection_has_token(*connection, "close");
  }
  return complete_at(head_end);
}

}  // namespace

ParseResult parse_request_head(std::string_view buffer, const HttpLimits& limits,
                               HttpRequest& out) {
  HttpRequest request;
  ParseResult result = read_head(buffer, limits, request);
  if (result.status == ParseStatus::complete) out = std::move(request);
  return result;
}

ParseResult parse_request(std::string_view buffer, const HttpLimits& limits, HttpRequest& out) {
  HttpRequest request;
  const ParseResult head = read_head(buffer, limits, request);
  if (head.status != ParseStatus::complete) return head;
  const std::size_t head_end = head.consumed;

  if (request.header("Transfer-Encoding") != nullptr) {
    return fail(501, "Transfer-Encoding request bodies are not supported");
  }
  std::optional<std::uint64_t> content_length;
  for (const HttpHeader& h : request.headers) {
    if (!iequals(h.name, "Content-Length")) continue;
    const std::string_view v = h.value;
    if (v.empty() ||
        !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return fail(400, "malformed Content-Length");
    }
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || end != v.data() + v.size()) return fail(413, "request body too large");
    if (content_length && *content_length != n) return fail(400, "conflicting Content-Length");
    content_length = n;
  }
  const std::uint64_t body_size = content_length.value_or(0);
  if (body_size > limits.max_body_bytes) return fail(413, "request body too large");
  const auto body_bytes = static_cast<std::size_t>(body_size);
  if (buffer.size() - head_end < body_bytes) return {};
  request.body.assign(buffer.substr(head_end, body_bytes));

  out = std::move(request);
  return complete_at(head_end + body_bytes);
}

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const std::size_t eq = pair.find('=');
    const auto key = form_decode(pair.substr(0, eq));
    if (key && *key == name) {
      return eq == std::string_view::npos ? std::optional<std::string>(std::string())
                                          : form_decode(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

void HttpResponse::set_header(std::string_view name, std::string value) {
  for (HttpHeader& h : headers) {
    if (iequals(h.name, name)) {
      h.value = std::move(value);
      return;
    }
  }
  headers.push_back({std::string(name), std::move(value)});
}

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string serialize_response(const HttpResponse& response, bool head_request, bool keep_alive,
                               unsigned version_minor) {
  // 1xx, 204 and 304 never carry a body (RFC 9110 6.4.1).
  const bool bodiless = (response.status >= 100 && response.status < 200) ||
                        response.status == 204 || response.status == 304;
  std::string out;
  out.reserve(128 + response.body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(response.status);
  out += ' ';
  out += reason_phrase(response.status);
  out += "\r\n";
  for (const HttpHeader& h : response.headers) {
    if (iequals(h.name, "Content-Length") || iequals(h.name, "Connection")) continue;
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  if (!bodiless) {
    out += "Content-Length: ";
    out += std::to_string(response.body.size());
    out += "\r\n";
  }
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (version_minor == 0) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  if (!head_request && !bodiless) out += response.body;
  return out;
}

}  // namespace forkd::common
