/* GET /status.json (the segment's live state, shm/status_json.c's JSON,
 * the same as `llmroute status --json`) and GET /ui, the status page that
 * polls it: HTML, CSS and JS in one string built from worker/ui/index.html
 * (Makefile: $(BUILD)/gen/ui_page.c), with no external asset. */
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "errors.h"
#include "worker_internal.h"

extern const char llmr_ui_page[];
extern const size_t llmr_ui_page_len;

void llmr_ui_status_json(llmr_worker *w, struct evhttp_request *req)
{
    size_t len;
    char *json = llmr_status_json(w->shm, llmr_wall_ms(), &len);

    if (json == NULL) {
        llmr_error_reply(w, req, LLMR_E_OUT_OF_MEMORY);
        return;
    }
    /* Counters change every request: no cache may serve a stale copy. */
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    llmr_http_reply_json(w, req, 200, json, len);
    free(json);
}

void llmr_ui_page_reply(llmr_worker *w, struct evhttp_request *req)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    struct evbuffer *buf = evbuffer_new();

    evhttp_add_header(out, "Content-Type", "text/html; charset=utf-8");
    /* The page loads nothing from anywhere else, and nothing may frame it. */
    evhttp_add_header(out, "Content-Security-Policy",
                      "default-src 'none'; connect-src 'self'; img-src 'self' data:; "
                      "style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                      "frame-ancestors 'none'");
    if (buf != NULL)
        evbuffer_add_reference(buf, llmr_ui_page, llmr_ui_page_len, NULL, NULL);
    llmr_http_reply(w, req, 200, buf);
    if (buf != NULL)
        evbuffer_free(buf);
}
