// HTTP for OCSP (RFC 6960 appendix A POST, RFC 5019 GET) and CRLs, with
// libcurl: one easy handle per fetch, http(s) only (redirects included),
// bounded in time and size, and an error that names the URL.
#include <curl/curl.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>

#include "controlplane/ocsp.h"

namespace lode::cp {

namespace {

constexpr long kMaxRedirects = 3;

CURLcode curl_ready() {
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  return rc;
}

struct CurlFree {
  void operator()(CURL* c) const noexcept { curl_easy_cleanup(c); }
  void operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }
};
using CurlPtr = std::unique_ptr<CURL, CurlFree>;
using HeaderList = std::unique_ptr<curl_slist, CurlFree>;

struct Sink {
  std::string body;
  size_t max = 0;
  bool too_big = false;
};

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const size_t len = size * count;
  if (len > sink->max - sink->body.size()) {
    sink->too_big = true;
    return 0;  // curl stops with CURLE_WRITE_ERROR
  }
  sink->body.append(data, len);
  return len;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool http_url(const std::string& url) {
  const std::string l = lower(std::string_view(url).substr(0, 8));
  return l.starts_with("http://") || l.starts_with("https://");
}

// "application/ocsp-response; charset=x" → "application/ocsp-response".
std::string media_type(const char* content_type) {
  std::string_view v = content_type != nullptr ? content_type : "";
  v = v.substr(0, v.find(';'));
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front()))) v.remove_prefix(1);
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.remove_suffix(1);
  return lower(v);
}

// RFC 3986 percent-encoding of everything but the unreserved characters (so
// base64's '+', '/' and '=' are encoded, as RFC 5019 asks).
std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    if (std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

struct Request {
  const char* method = "GET";
  std::string url;
  std::string_view post_body;
  bool post = false;
  const char* required_type = nullptr;  // media type the reply must have
};

Result<std::string, std::string> perform(const Request& r, std::chrono::milliseconds timeout,
                                         size_t max_bytes) {
  const std::string what = std::string(r.method) + " " + r.url + ": ";
  if (!http_url(r.url)) return unexpected(what + "only http:// and https:// URLs are fetched");
  if (timeout.count() <= 0) return unexpected(what + "the timeout must be positive");
  if (max_bytes == 0) return unexpected(what + "the size limit must be positive");
  if (const CURLcode rc = curl_ready(); rc != CURLE_OK) {
    return unexpected(what + "libcurl did not initialise: " + curl_easy_strerror(rc));
  }
  CurlPtr curl(curl_easy_init());
  if (curl == nullptr) return unexpected(what + "libcurl could not make a handle");
  CURL* c = curl.get();

  Sink sink;
  sink.max = max_bytes;
  char errbuf[CURL_ERROR_SIZE] = {};
  HeaderList headers;
  auto add_header = [&headers](const char* h) {
    curl_slist* l = curl_slist_append(headers.get(), h);
    if (l != nullptr) {
      (void)headers.release();  // `l` now owns the old list
      headers.reset(l);
    }
  };
  if (r.required_type != nullptr) {
    add_header((std::string("Accept: ") + r.required_type).c_str());
  }
  if (r.post) {
    add_header("Content-Type: application/ocsp-request");
    add_header("Expect:");  // no 100-continue round trip
  }

  curl_easy_setopt(c, CURLOPT_URL, r.url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, kMaxRedirects);
  curl_easy_setopt(c, CURLOPT_POSTREDIR, static_cast<long>(CURL_REDIR_POST_ALL));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(max_bytes));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "Lodestone-OCSP/1");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  if (r.post) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, r.post_body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.post_body.size()));
  } else {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  }

  const CURLcode rc = curl_easy_perform(c);
  std::string where;
  const char* effective = nullptr;
  if (curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &effective) == CURLE_OK &&
      effective != nullptr && r.url != effective) {
    where = " (redirected to " + std::string(effective) + ")";
  }
  // curl's own words, when they add to curl_easy_strerror's.
  const std::string detail = errbuf[0] != '\0' && std::string_view(errbuf) != curl_easy_strerror(rc)
                                 ? std::string(" (") + errbuf + ")"
                                 : std::string();
  if (rc != CURLE_OK) {
    switch (rc) {
      case CURLE_OPERATION_TIMEDOUT:
        return unexpected(what + "timed out after " + std::to_string(timeout.count()) + " ms" +
                          where + detail);
      case CURLE_FILESIZE_EXCEEDED:
        return unexpected(what + "response larger than " + std::to_string(max_bytes) + " bytes" +
                          where);
      case CURLE_WRITE_ERROR:
        if (sink.too_big) {
          return unexpected(what + "response larger than " + std::to_string(max_bytes) + " bytes" +
                            where);
        }
        break;
      case CURLE_UNSUPPORTED_PROTOCOL:
        return unexpected(what + "refused a URL or redirect that is not http(s)" + where + detail);
      case CURLE_TOO_MANY_REDIRECTS:
        return unexpected(what + "more than " + std::to_string(kMaxRedirects) + " redirects" +
                          detail);
      default:
        break;
    }
    return unexpected(what + curl_easy_strerror(rc) + where + detail);
  }
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (code != 200) {
    return unexpected(what + "HTTP status " + std::to_string(code) + ", expected 200" + where);
  }
  if (r.required_type != nullptr) {
    const char* type = nullptr;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type);
    if (media_type(type) != r.required_type) {
      return unexpected(what + "Content-Type '" + std::string(type != nullptr ? type : "") +
                        "', expected " + r.required_type + where);
    }
  }
  if (sink.body.empty()) return unexpected(what + "empty body" + where);
  return std::move(sink.body);
}

}  // namespace

std::string ocsp_get_url(const std::string& url, std::string_view request_der) {
  std::string b64(4 * ((request_der.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()),
                                reinterpret_cast<const unsigned char*>(request_der.data()),
                                static_cast<int>(request_der.size()));
  b64.resize(n > 0 ? static_cast<size_t>(n) : 0);
  std::string out = url;
  if (out.empty() || out.back() != '/') out += '/';
  out += url_encode(b64);
  return out;
}

Result<std::string, std::string> fetch_ocsp(const std::string& url, std::string_view request_der,
                                            OcspMethod method, std::chrono::milliseconds timeout,
                                            size_t max_bytes) {
  Request r;
  r.required_type = "application/ocsp-response";
  if (method == OcspMethod::kPost) {
    r.method = "POST";
    r.url = url;
    r.post = true;
    r.post_body = request_der;
  } else {
    r.url = ocsp_get_url(url, request_der);
  }
  if (request_der.empty()) return unexpected(std::string(r.method) + " " + url + ": empty request");
  return perform(r, timeout, max_bytes);
}

Result<std::string, std::string> fetch_url(const std::string& url,
                                           std::chrono::milliseconds timeout, size_t max_bytes) {
  Request r;
  r.url = url;
  return perform(r, timeout, max_bytes);
}

}  // namespace lode::cp
