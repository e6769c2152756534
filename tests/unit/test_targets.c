/* What a worker precomputes per deployment for libcurl (worker/provider.c):
 * the proxy the environment names, read as libcurl reads it on every
 * transfer, and each URL parsed as libcurl parses a CURLOPT_URL. */
#include "../../worker/provider.c"

#include "t.h"

static const char *const vars[] = {
    "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
    "no_proxy", "NO_PROXY",
};

static void env_clear(void)
{
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
}

static int proxy_is(const char *url, const char *want)
{
    char *p = env_proxy(url);
    int ok = p != NULL && strcmp(p, want) == 0;

    if (!ok)
        fprintf(stderr, "proxy of %s: got \"%s\", want \"%s\"\n", url, p ? p : "(null)", want);
    free(p);
    return ok;
}

static void test_none_is_empty(void)
{
    env_clear();
    T_CHECK(proxy_is("https://api.openai.com/v1", ""));
    T_CHECK(proxy_is("http://127.0.0.1:8000/v1", ""));
}

static void test_scheme_variables(void)
{
    env_clear();
    setenv("HTTPS_PROXY", "http://upper:1", 1);
    T_CHECK(proxy_is("https://a/v1", "http://upper:1"));
    T_CHECK(proxy_is("HTTPS://a/v1", "http://upper:1"));
    T_CHECK(proxy_is("http://a/v1", ""));
    setenv("https_proxy", "http://lower:1", 1);     /* lower case first */
    T_CHECK(proxy_is("https://a/v1", "http://lower:1"));
    setenv("https_proxy", "", 1);                   /* empty counts as unset */
    T_CHECK(proxy_is("https://a/v1", "http://upper:1"));
}

/* httpoxy: HTTP_PROXY, which a CGI client can set with a Proxy: header, is
 * never read; http_proxy is. */
static void test_http_lower_case_only(void)
{
    env_clear();
    setenv("HTTP_PROXY", "http://upper:1", 1);
    T_CHECK(proxy_is("http://a/v1", ""));
    setenv("http_proxy", "http://lower:1", 1);
    T_CHECK(proxy_is("http://a/v1", "http://lower:1"));
    T_CHECK(proxy_is("https://a/v1", ""));
}

static void test_all_proxy_last(void)
{
    env_clear();
    setenv("ALL_PROXY", "http://all-upper:1", 1);
    T_CHECK(proxy_is("http://a/v1", "http://all-upper:1"));
    T_CHECK(proxy_is("https://a/v1", "http://all-upper:1"));
    setenv("all_proxy", "http://all-lower:1", 1);
    T_CHECK(proxy_is("https://a/v1", "http://all-lower:1"));
    setenv("https_proxy", "http://scheme:1", 1);
    T_CHECK(proxy_is("https://a/v1", "http://scheme:1"));
    T_CHECK(proxy_is("http://a/v1", "http://all-lower:1"));
}

static void test_no_proxy(void)
{
    char *n;

    env_clear();
    n = env_noproxy();
    T_CHECK(n != NULL && strcmp(n, "") == 0);
    free(n);
    setenv("NO_PROXY", "upper.example", 1);
    n = env_noproxy();
    T_CHECK(n != NULL && strcmp(n, "upper.example") == 0);
    free(n);
    setenv("no_proxy", "lower.example,127.0.0.1", 1);
    n = env_noproxy();
    T_CHECK(n != NULL && strcmp(n, "lower.example,127.0.0.1") == 0);
    free(n);
    env_clear();
}

/* The parsed URL reads back as libcurl's own parse of the string would. */
static int same_as_string(const char *url)
{
    CURLU *uh = url_parsed(url), *ref = curl_url();
    char *a = NULL, *b = NULL;
    int ok = uh != NULL && ref != NULL
          && curl_url_set(ref, CURLUPART_URL, url,
                          CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK
          && curl_url_get(uh, CURLUPART_URL, &a, 0) == CURLUE_OK
          && curl_url_get(ref, CURLUPART_URL, &b, 0) == CURLUE_OK && strcmp(a, b) == 0;

    if (!ok)
        fprintf(stderr, "%s: parsed %s, libcurl %s\n", url, a ? a : "-", b ? b : "-");
    curl_free(a);
    curl_free(b);
    curl_url_cleanup(uh);
    curl_url_cleanup(ref);
    return ok;
}

static void test_url_parsed(void)
{
    CURLU *uh;
    char *q = NULL;

    T_CHECK(same_as_string("http://127.0.0.1:8000/v1/chat/completions"));
    T_CHECK(same_as_string("https://x.openai.azure.com/openai/deployments/d/chat/completions"
                           "?api-version=2024-02-01"));
    T_CHECK(same_as_string("http://[::1]:9/v1/embeddings"));
    T_CHECK(same_as_string("https://user:pass@gw.example/v1/responses"));
    uh = url_parsed("https://x.example/openai/d?api-version=2024-02-01");
    T_CHECK(uh != NULL && curl_url_get(uh, CURLUPART_QUERY, &q, 0) == CURLUE_OK
            && strcmp(q, "api-version=2024-02-01") == 0);
    curl_free(q);
    curl_url_cleanup(uh);
    /* one libcurl rejects stays a string (NULL here), to fail as before */
    T_CHECK(url_parsed("http://a b/v1") == NULL);
    T_CHECK(url_parsed("http://a:99999/v1") == NULL);
}

int main(void)
{
    T_RUN(test_none_is_empty);
    T_RUN(test_scheme_variables);
    T_RUN(test_http_lower_case_only);
    T_RUN(test_all_proxy_last);
    T_RUN(test_no_proxy);
    T_RUN(test_url_parsed);
    return T_DONE();
}
