// The shared HTTP/1.x parser and serialiser: framing, limits, keep-alive rules, error statuses.
#include "common/http.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

using forkd::common::HttpLimits;
using forkd::common::HttpRequest;
using forkd::common::HttpResponse;
using forkd::common::parse_request;
using forkd::common::parse_request_head;
using forkd::common::ParseResult;
using forkd::common::ParseStatus;
using forkd::common::query_param;
using forkd::common::serialize_response;

ParseResult parse(const std::string& text, HttpRequest& out, HttpLimits limits = {}) {
  return parse_request(text, limits, out);
}

int error_status(const std::string& text, HttpLimits limits = {}) {
  HttpRequest r;
  const ParseResult result = parse(text, r, limits);
  EXPECT_EQ(result.status, ParseStatus::error) << text;
  EXPECT_FALSE(result.error.empty());
  return result.error_status;
}

TEST(HttpParser, ParsesASimpleGet) {
  HttpRequest r;
  const std::string text = "GET /compute?n=10 HTTP/1.1\r\nHost: x\r\nX-A:  b c \r\n\r\n";
  const ParseResult result = parse(text, r);
  ASSERT_EQ(result.status, ParseStatus::complete);
  EXPECT_EQ(result.consumed, text.size());
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/compute?n=10");
  EXPECT_EQ(r.path, "/compute");
  EXPECT_EQ(r.query, "n=10");
  EXPECT_EQ(r.version_minor, 1U);
  ASSERT_EQ(r.headers.size(), 2U);
  ASSERT_NE(r.header("x-a"), nullptr);
  EXPECT_EQ(*r.header("X-A"), "b c");
  EXPECT_EQ(r.header("missing"), nullptr);
  EXPECT_TRUE(r.keep_alive);
  EXPECT_TRUE(r.body.empty());
}

TEST(HttpParser, IsIncompleteUntilTheHeadEnds) {
  const std::string text = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  for (std::size_t n = 0; n < text.size(); ++n) {
    HttpRequest r;
    EXPECT_EQ(parse(text.substr(0, n), r).status, ParseStatus::incomplete) << n;
  }
}

TEST(HttpParser, AcceptsBareLineFeedsAndLeadingBlankLines) {
  HttpRequest r;
  const std::string text = "\r\n\nGET /x HTTP/1.0\nHost: y\n\n";
  const ParseResult result = parse(text, r);
  ASSERT_EQ(result.status, ParseStatus::complete);
  EXPECT_EQ(result.consumed, text.size());
  EXPECT_EQ(r.path, "/x");
  EXPECT_EQ(r.version_minor, 0U);
}

TEST(HttpParser, ConsumesOnlyTheFirstOfPipelinedRequests) {
  const std::string first = "GET /a HTTP/1.1\r\n\r\n";
  const std::string second = "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz";
  HttpRequest r;
  ParseResult result = parse(first + second, r);
  ASSERT_EQ(result.status, ParseStatus::complete);
  EXPECT_EQ(result.consumed, first.size());
  EXPECT_EQ(r.path, "/a");
  result = parse(second + "GET", r);
  ASSERT_EQ(result.status, ParseStatus::complete);
  EXPECT_EQ(result.consumed, second.size());
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.body, "xyz");
}

TEST(HttpParser, WaitsForTheWholeBody) {
  HttpRequest r;
  EXPECT_EQ(parse("PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc", r).status,
            ParseStatus::incomplete);
  ASSERT_EQ(parse("PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde", r).status,
            ParseStatus::complete);
  EXPECT_EQ(r.body, "abcde");
}

TEST(HttpParser, KeepAliveFollowsVersionAndConnection) {
  struct Case {
    const char* text;
    bool keep_alive;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\n\r\n", true},
      {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n", false},
      {"GET / HTTP/1.0\r\n\r\n", false},
      {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
      {"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", false},
  };
  for (const Case& c : cases) {
    HttpRequest r;
    ASSERT_EQ(parse(c.text, r).status, ParseStatus::complete) << c.text;
    EXPECT_EQ(r.keep_alive, c.keep_alive) << c.text;
  }
}

TEST(HttpParser, RejectsMalformedRequestsWith400) {
  const char* bad[] = {
      "GARBAGE\r\n\r\n",
      "GET /\r\n\r\n",
      "GET  / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1 extra\r\n\r\n",
      "GET / HTTX/1.1\r\n\r\n",
      "G(T / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
      "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
      "GET / HTTP/1.1\r\nName : x\r\n\r\n",
      "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
      "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",
      "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
      "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
      "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
      "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
  };
  for (const char* text : bad) EXPECT_EQ(error_status(text), 400) << text;
}

TEST(HttpParser, RejectsAnInvalidRequestLineBeforeTheHeadEnds) {
  // A client speaking something else must not hold a connection until the head cap.
  EXPECT_EQ(error_status("\x16\x03\x01 garbage\r\n"), 400);
}

TEST(HttpParser, RejectsOtherMajorVersionsWith505) {
  EXPECT_EQ(error_status("GET / HTTP/2.0\r\n\r\n"), 505);
  EXPECT_EQ(error_status("GET / HTTP/0.9\r\n\r\n"), 505);
}

TEST(HttpParser, CapsTheHeadAt431) {
  const HttpLimits limits{};
  // No end of head within the cap, even without a single newline.
  EXPECT_EQ(error_status(std::string(limits.max_head_bytes + 1, 'a')), 431);
  const std::string big_header =
      "GET / HTTP/1.1\r\nX: " + std::string(limits.max_head_bytes, 'v') + "\r\n\r\n";
  EXPECT_EQ(error_status(big_header), 431);
  // Just under the cap is fine.
  const std::string prefix = "GET / HTTP/1.1\r\nX: ";
  const std::string fits =
      prefix + std::string(limits.max_head_bytes - prefix.size() - 4, 'v') + "\r\n\r\n";
  ASSERT_EQ(fits.size(), limits.max_head_bytes);
  HttpRequest r;
  EXPECT_EQ(parse(fits, r).status, ParseStatus::complete);
}

TEST(HttpParser, CapsTheBodyAt413) {
  const HttpLimits limits{};
  EXPECT_EQ(error_status("POST / HTTP/1.1\r\nContent-Length: " +
                         std::to_string(limits.max_body_bytes + 1) + "\r\n\r\n"),
            413);
  EXPECT_EQ(error_status("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            413);
  HttpRequest r;
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nContent-Length: " + std::to_string(limits.max_body_bytes) +
                      "\r\n\r\n",
                  r)
                .status,
            ParseStatus::incomplete);
}

TEST(HttpParser, RefusesChunkedBodiesWith501) {
  EXPECT_EQ(error_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 501);
}

TEST(HttpParser, SplitsAbsoluteFormTargets) {
  HttpRequest r;
  ASSERT_EQ(parse("GET http://example/sleep?ms=5#frag HTTP/1.1\r\n\r\n", r).status,
            ParseStatus::complete);
  EXPECT_EQ(r.path, "/sleep");
  EXPECT_EQ(r.query, "ms=5");
}

TEST(HttpParser, TargetsMustHaveARequestTargetForm) {
  for (const char* bad : {"GET metrics HTTP/1.1\r\n\r\n", "GET example.com:80 HTTP/1.1\r\n\r\n",
                          "GET ?q HTTP/1.1\r\n\r\n"}) {
    EXPECT_EQ(error_status(bad), 400) << bad;
  }
  for (const char* good : {"OPTIONS * HTTP/1.1\r\n\r\n", "CONNECT example.com:443 HTTP/1.1\r\n\r\n",
                           "GET https://example/x HTTP/1.1\r\n\r\n"}) {
    HttpRequest r;
    EXPECT_EQ(parse(good, r).status, ParseStatus::complete) << good;
  }
}

TEST(HttpParser, TheHeadAloneIgnoresTheBodyFraming) {
  const HttpLimits limits{};
  const std::string head = "POST /metrics HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n";
  HttpRequest r;
  // The whole request would wait for (and refuse) its body; the head alone is complete.
  EXPECT_EQ(parse_request(head, limits, r).status, ParseStatus::error);
  const ParseResult result = parse_request_head(head + "body", limits, r);
  ASSERT_EQ(result.status, ParseStatus::complete);
  EXPECT_EQ(result.consumed, head.size());
  EXPECT_EQ(r.path, "/metrics");
  EXPECT_TRUE(r.body.empty());
  const std::string chunked = "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
  ASSERT_EQ(parse_request_head(chunked, limits, r).status, ParseStatus::complete);
  EXPECT_FALSE(r.keep_alive);
  // The head's own rules and caps are the same.
  EXPECT_EQ(parse_request_head("GET / HTTP/1.1\r\nHost: x\r\n", limits, r).status,
            ParseStatus::incomplete);
  EXPECT_EQ(parse_request_head("GET / HTTP/2.0\r\n", limits, r).error_status, 505);
  EXPECT_EQ(parse_request_head(std::string(limits.max_head_bytes + 1, 'a'), limits, r).error_status,
            431);
}

TEST(HttpQuery, FindsAndDecodesParameters) {
  EXPECT_EQ(query_param("n=10", "n"), "10");
  EXPECT_EQ(query_param("a=1&n=2&n=3", "n"), "2");
  EXPECT_EQ(query_param("a=x+y%21", "a"), "x y!");
  EXPECT_EQ(query_param("flag&b=1", "flag"), "");
  EXPECT_EQ(query_param("nn=1", "n"), std::nullopt);
  EXPECT_EQ(query_param("", "n"), std::nullopt);
  EXPECT_EQ(query_param("n=%4", "n"), std::nullopt);
  EXPECT_EQ(query_param("n=%zz", "n"), std::nullopt);
}

TEST(HttpResponseText, CarriesLengthAndConnection) {
  HttpResponse response;
  response.status = 404;
  response.set_header("X-Worker-Id", "3");
  response.set_header("Content-Length", "999");  // ignored: the serialiser counts
  response.set_header("x-worker-id", "4");       // replaces, case-insensitively
  response.body = "not found\n";
  EXPECT_EQ(serialize_response(response, false, true, 1),
            "HTTP/1.1 404 Not Found\r\nX-Worker-Id: 4\r\nContent-Length: 10\r\n\r\nnot found\n");
  EXPECT_EQ(serialize_response(response, false, false, 1),
            "HTTP/1.1 404 Not Found\r\nX-Worker-Id: 4\r\nContent-Length: 10\r\n"
            "Connection: close\r\n\r\nnot found\n");
  EXPECT_EQ(serialize_response(response, false, true, 0),
            "HTTP/1.1 404 Not Found\r\nX-Worker-Id: 4\r\nContent-Length: 10\r\n"
            "Connection: keep-alive\r\n\r\nnot found\n");
}

TEST(HttpResponseText, HeadHasTheLengthButNoBody) {
  HttpResponse response;
  response.body = "hello";
  EXPECT_EQ(serialize_response(response, true, true, 1),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
}

}  // namespace
