/*
 * natsbench: a small core-NATS load generator on the NATS C client (libnats).
 *
 *   natsbench -m pub    -u URL [-n MSGS] [-s BYTES]           one publisher, one subscriber
 *   natsbench -m fanout -u URL [-n MSGS] [-s BYTES] [-k SUBS]  one publisher, SUBS subscribers
 *   natsbench -m reqrep -u URL [-n REQS] [-s BYTES] [-w WORKERS] sequential requests per worker
 *
 * Persistent-messaging modes (benchmarks/mq9_bench.py drives them):
 *
 *   natsbench -m mq9pub  -u URL -S SUBJ[,SUBJ..] [-n] [-s] [-w WINDOW]
 *       acknowledged publishes, WINDOW requests in flight on one connection: each PUB
 *       carries its own reply subject under one inbox subscription (async request/reply);
 *       a reply whose body has "error" counts as failed. Reports rate and latency p50/p99.
 *   natsbench -m jspub   -u URL -S SUBJ[,SUBJ..] [-n] [-s] [-w WINDOW]
 *       JetStream js_PublishAsync with PublishAsync.MaxPending = WINDOW, then
 *       js_PublishAsyncComplete. Reports rate (no per-message latency).
 *   natsbench -m load    -u URL -S SUBJ[,SUBJ..] [-n] [-s] [-b BARRIER]
 *       publishes without reply, a PING/PONG flush every BARRIER messages and at the end
 *       (on mq9 a PONG means every earlier publish is committed).
 *   natsbench -m fanout  ... [-R SUB_SUBJECT]   as above, subscribers on SUB_SUBJECT
 *   natsbench -m jsfanout -u URLS -S SUBJ [-R FILTER] [-k SUBS]
 *       like fanout, each subscriber a JetStream ordered push consumer on FILTER.
 *   natsbench -m catchup   -u URL -S SUBJ -n COUNT      one new subscriber on SUBJ (an mq9
 *       mailbox subject) reads COUNT stored messages; rate = COUNT / (last delivery -
 *       subscribe). The subscriber connects to the last URL of -u.
 *   natsbench -m jscatchup -u URL -S FILTER -n COUNT    the same with a JetStream ordered
 *       push consumer on FILTER.
 *   natsbench -m mq9wq   -u URLS -S SUBJ -R SUB_SUBJECT [-q QUEUE] [-k WORKERS] [-n TASKS]
 *       WORKERS queue-group subscribers acking each task (+ACK to its reply subject) while
 *       one producer publishes TASKS; rate = distinct tasks acked per second, measured
 *       up to the workers' final flush.
 *   natsbench -m jswq    -u URLS -S SUBJ -D STREAM:CONSUMER [-k WORKERS] [-n TASKS] [-B BATCH]
 *       WORKERS threads, each on its own connection bound to the existing durable pull
 *       consumer, fetching BATCH at a time and acking each message.
 *
 * Common: -S SUBJECT (default "bench.core"), -t SECONDS overall deadline (default 60),
 * -u may list several URLs separated by commas: connection i uses URL i mod count (the
 * publisher/producer always the first), -p prints progress lines "#P done total" on
 * stdout about five times a second.
 * -U SUBURL[,SUBURL..] puts the subscriber, responder and worker connections on these URLs
 * instead (connection i on URL i mod count; default: the -u list), e.g. on another node
 * of a cluster than the publisher/requester. With -U, pub/fanout (core subscribers on -S)
 * and reqrep first make sure the interest has reached the publisher's server: the
 * publisher/requester sends requests on the subject until one is answered (pub/fanout
 * subscribers answer a request whose body is "natsbench-probe" and do not count it), so
 * no measured message is lost to a subscription still on its way between nodes; and
 * pub/fanout stop waiting for deliveries 3 s after the last one once the publisher has
 * flushed ("stalled": true; messages lost between the servers would otherwise hold the
 * run until its deadline).
 * Every connection is its own TCP connection. The result is one JSON line on stdout;
 * on a deadline the run stops and reports what it got with "complete": false; on a
 * client error it prints {"error": ...} and exits 1.
 *
 * pub/fanout: the rate is deliveries (summed over subscribers) divided by the time from
 * the first publish to the last delivery. reqrep: completed round trips per second.
 *
 * Build: gcc -O2 -Wall -o natsbench natsbench.c -lnats -lpthread
 */
#define _GNU_SOURCE
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_URLS 16
#define MAX_SUBJECTS 16

static struct {
    const char *mode, *url, *subj;
    const char *sub_url;  /* -U: URLs for subscriber/responder/worker connections (default: url) */
    long long   n;        /* messages (pub/fanout/load/...) or requests (reqrep) */
    int         size;     /* payload bytes */
    int         subs;     /* subscriber connections (fanout) or workers (wq) */
    int         workers;  /* concurrent requester threads (reqrep), window (mq9pub/jspub) */
    double      timeout;  /* overall deadline in seconds */
    const char *sub_subj; /* -R: subject subscribers use (default: subj) */
    const char *queue;    /* -q: queue group (mq9wq) */
    const char *durable;  /* -D: STREAM:CONSUMER (jswq) */
    long long   barrier;  /* -b: flush every this many publishes (load) */
    int         batch;    /* -B: fetch batch (jswq) */
    int         progress; /* -p: print "#P done total" lines */
} cfg = {"pub", "nats://127.0.0.1:4222", "bench.core", NULL, 100000, 128, 10, 1, 60.0,
         NULL, "workers", NULL, 20000, 64, 0};

static char       *urls[MAX_URLS];
static int         nurls;
static char       *sub_urls[MAX_URLS];  /* -U, or the same as urls */
static int         nsub_urls;
static char       *subjects[MAX_SUBJECTS];
static int         nsubjects;

static char       *payload;
static int64_t     deadline_ns;
static atomic_llong delivered;   /* messages seen by all subscribers together */
static atomic_llong last_ns;     /* time of the latest delivery */
static atomic_llong issued;      /* requests handed out to requester threads */
static atomic_llong completed;   /* round trips that got a reply */
static atomic_llong errors;      /* requests that failed (timeout, no responders, ...) */
static char         first_error[256];
static atomic_int   have_first_error;

/* Print a JSON error line and exit; used for anything that makes the run meaningless. */
static void fail(const char *what, natsStatus s)
{
    printf("{\"mode\":\"%s\",\"error\":\"%s: %s\"}\n", cfg.mode, what, natsStatus_GetText(s));
    fflush(stdout);
    exit(1);
}
#define CHECK(call) do { natsStatus s_ = (call); if (s_ != NATS_OK) fail(#call, s_); } while (0)

static void fail_js(const char *what, natsStatus s, jsErrCode jerr)
{
    const char *last = nats_GetLastError(NULL);
    printf("{\"mode\":\"%s\",\"error\":\"%s: %s (jserr %d) ", cfg.mode, what, natsStatus_GetText(s), (int)jerr);
    for (const char *c = last ? last : ""; *c; c++)   /* JSON-safe copy of the library's text */
        if (*c != '"' && *c != '\\' && (unsigned char)*c >= 0x20)
            putchar(*c);
    printf("\"}\n");
    fflush(stdout);
    exit(1);
}
#define CHECK_JS(call) do { jsErrCode je_ = 0; natsStatus s_ = (call); \
    if (s_ != NATS_OK) fail_js(#call, s_, je_); } while (0)

static void note_error(const char *text, int len)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&have_first_error, &expected, 1)) {
        int j = 0;
        for (int i = 0; i < len && j < (int)sizeof first_error - 1; i++)
            if (text[i] != '"' && text[i] != '\\' && (unsigned char)text[i] >= 0x20)
                first_error[j++] = text[i];
        first_error[j] = 0;
    }
}

static int64_t now_ns(void) { return nats_NowInNanoSeconds(); }
static int64_t remaining_ms(void)
{
    int64_t ms = (deadline_ns - now_ns()) / 1000000;
    return ms > 1 ? ms : 1;
}

/* "#P done total" about five times a second when -p is given. */
static int64_t last_progress_ns;
static void progress(long long done, long long total)
{
    if (!cfg.progress)
        return;
    int64_t t = now_ns();
    if (t - last_progress_ns < 200000000LL)
        return;
    last_progress_ns = t;
    printf("#P %lld %lld\n", done, total);
    fflush(stdout);
}

/* Split a comma-separated list in place into out[]; returns the count (at least 1). */
static int split_list(char *text, char **out, int max)
{
    int n = 0;
    for (char *tok = strtok(text, ","); tok != NULL && n < max; tok = strtok(NULL, ","))
        if (*tok)
            out[n++] = tok;
    return n;
}

/* One TCP connection to URL number idx (mod the count) of the -u list. sendAsap=false lets
 * the library coalesce publishes into large writes (throughput); true writes each publish
 * at once (request/reply latency). */
static natsConnection *connect_url(const char *name, bool send_asap, const char *url)
{
    natsOptions *o;
    natsConnection *nc;
    CHECK(natsOptions_Create(&o));
    CHECK(natsOptions_SetURL(o, url));
    CHECK(natsOptions_SetName(o, name));
    CHECK(natsOptions_SetTimeout(o, 5000));          /* connect timeout, ms */
    CHECK(natsOptions_SetAllowReconnect(o, false));  /* a drop is a failure, not a pause */
    CHECK(natsOptions_SetSendAsap(o, send_asap));
    CHECK(natsOptions_SetIgnoreDiscoveredServers(o, true));
    CHECK(natsConnection_Connect(&nc, o));
    natsOptions_Destroy(o);
    return nc;
}

static natsConnection *connect_idx(const char *name, bool send_asap, int idx)
{
    return connect_url(name, send_asap, urls[idx % nurls]);
}

/* A subscriber/responder/worker connection: URL number idx (mod the count) of the -U list. */
static natsConnection *connect_sub(const char *name, bool send_asap, int idx)
{
    return connect_url(name, send_asap, sub_urls[idx % nsub_urls]);
}

static natsConnection *connect_one(const char *name, bool send_asap)
{
    return connect_idx(name, send_asap, 0);
}

static jsCtx *jetstream(natsConnection *nc, jsOptions *jo)
{
    jsCtx *js;
    CHECK(natsConnection_JetStream(&js, nc, jo));
    return js;
}

/* Subscriber callback for pub/fanout: count and timestamp, nothing else. */
static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    atomic_fetch_add(&delivered, 1);
    atomic_store(&last_ns, now_ns());
    natsMsg_Destroy(msg);
}

/* ---- -U: wait until the subscribers' interest reaches the publisher's server ---------- */

#define PROBE_BODY "natsbench-probe"
#define PROBE_LEN ((int)sizeof PROBE_BODY - 1)
#define PROBE_WAIT_MS 15000
#define STALL_NS 3000000000LL  /* -U pub/fanout: stop waiting after 3 s without a delivery */

/* on_msg for pub/fanout with -U: answer the probe, count everything else. */
static void on_msg_or_probe(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    const char *reply = natsMsg_GetReply(msg);
    if (reply != NULL && natsMsg_GetDataLength(msg) == PROBE_LEN
        && memcmp(natsMsg_GetData(msg), PROBE_BODY, PROBE_LEN) == 0) {
        natsConnection_Publish(nc, reply, "ok", 2);
        natsConnection_Flush(nc);
        natsMsg_Destroy(msg);
        return;
    }
    on_msg(nc, sub, msg, closure);
}

/* Requests on `subj` from nc until one is answered: the answering side's SUB has reached
 * nc's server, and so has nc's reply interest the other way. Fails the run after
 * PROBE_WAIT_MS (or the deadline). Returns the number of requests it took. */
static int probe_interest(natsConnection *nc, const char *subj, const char *body, int len)
{
    int64_t until = now_ns() + (int64_t)PROBE_WAIT_MS * 1000000;
    natsStatus s = NATS_OK;
    for (int tries = 1;; tries++) {
        natsMsg *reply = NULL;
        s = natsConnection_Request(&reply, nc, subj, body, len, 500);
        if (s == NATS_OK) {
            natsMsg_Destroy(reply);
            return tries;
        }
        if (now_ns() > until || now_ns() > deadline_ns)
            fail("no answer to the interest probe (subscription not propagated between servers?)", s);
        nats_Sleep(20);  /* no responders comes back at once: do not spin */
    }
}

/* pub (k = 1), fanout (k = cfg.subs) and jsfanout (JetStream ordered push consumers).
 * Subscriber i connects to URL i mod count, the publisher to the first URL. */
static void run_pubsub(int k, bool js_consumers)
{
    natsConnection **subc = calloc(k, sizeof *subc);
    natsSubscription **subs = calloc(k, sizeof *subs);
    jsCtx **jss = calloc(k, sizeof *jss);
    const char *sub_subj = cfg.sub_subj ? cfg.sub_subj : cfg.subj;
    bool probe = cfg.sub_url != NULL && !js_consumers && cfg.sub_subj == NULL;
    for (int i = 0; i < k; i++) {
        subc[i] = connect_sub("natsbench-sub", false, i);
        if (js_consumers) {
            jsSubOptions so;
            jsSubOptions_Init(&so);
            so.Ordered = true;
            jss[i] = jetstream(subc[i], NULL);
            CHECK_JS(js_Subscribe(&subs[i], jss[i], sub_subj, on_msg, NULL, NULL, &so, &je_));
        } else {
            CHECK(natsConnection_Subscribe(&subs[i], subc[i], sub_subj, probe ? on_msg_or_probe : on_msg, NULL));
        }
        CHECK(natsSubscription_SetPendingLimits(subs[i], -1, -1)); /* never drop client-side */
        CHECK(natsConnection_FlushTimeout(subc[i], 5000));         /* SUB is live on the server */
    }
    natsConnection *pub = connect_one("natsbench-pub", false);
    int probes = probe ? probe_interest(pub, cfg.subj, PROBE_BODY, PROBE_LEN) : 0;

    int64_t start = now_ns();
    long long sent = 0;
    for (; sent < cfg.n; sent++) {
        /* check the deadline every 4096 messages: a slow server must not hang us */
        if ((sent & 4095) == 0) {
            if (now_ns() > deadline_ns)
                break;
            progress(atomic_load(&delivered), cfg.n * k);
        }
        CHECK(natsConnection_Publish(pub, cfg.subj, payload, cfg.size));
    }
    /* PING/PONG: when it returns, the server has read every publish (mq9: stored them) */
    natsStatus fs = natsConnection_FlushTimeout(pub, remaining_ms());
    int64_t pub_end = now_ns();

    long long expected = sent * k;
    bool stalled = false;
    while (atomic_load(&delivered) < expected && now_ns() < deadline_ns) {
        progress(atomic_load(&delivered), cfg.n * k);
        /* -U: the messages cross servers; if none arrives for a while after the publisher's
         * flush, the rest were lost between the servers: do not wait out the deadline */
        int64_t last = atomic_load(&last_ns);
        if (probe && now_ns() - (last > pub_end ? last : pub_end) > STALL_NS) {
            stalled = true;
            break;
        }
        nats_Sleep(1);
    }

    long long got = atomic_load(&delivered);
    int64_t dropped = 0;
    for (int i = 0; i < k; i++) {
        int64_t d = 0;
        natsSubscription_GetDropped(subs[i], &d);
        dropped += d;
    }
    double secs = got > 0 ? (atomic_load(&last_ns) - start) / 1e9 : (now_ns() - start) / 1e9;
    double pub_secs = (pub_end - start) / 1e9;
    printf("{\"mode\":\"%s\",\"client\":\"nats.c %s\",\"msgs\":%lld,\"size\":%d,\"subs\":%d,"
           "\"sent\":%lld,\"expected\":%lld,\"delivered\":%lld,\"dropped\":%lld,"
           "\"seconds\":%.6f,\"rate\":%.1f,\"pub_rate\":%.1f,\"probes\":%d,\"stalled\":%s,\"flush_ok\":%s,"
           "\"complete\":%s}\n",
           cfg.mode, nats_GetVersion(), cfg.n, cfg.size, k, sent, expected, got, (long long)dropped,
           secs, secs > 0 ? got / secs : 0.0, pub_secs > 0 ? sent / pub_secs : 0.0, probes,
           stalled ? "true" : "false",
           fs == NATS_OK ? "true" : "false",
           (sent == cfg.n && got == expected && fs == NATS_OK) ? "true" : "false");
    fflush(stdout);

    natsConnection_Destroy(pub);
    for (int i = 0; i < k; i++) {
        natsSubscription_Unsubscribe(subs[i]);
        natsSubscription_Destroy(subs[i]);
        if (jss[i])
            jsCtx_Destroy(jss[i]);
        natsConnection_Destroy(subc[i]);
    }
    free(jss);
    free(subs);
    free(subc);
}

/* catchup / jscatchup: a new subscriber reads what is already stored. */
static void run_catchup(bool js_consumer)
{
    natsConnection *nc = connect_url("natsbench-catchup", false, urls[nurls - 1]);
    natsSubscription *sub = NULL;
    jsCtx *js = NULL;
    int64_t start = now_ns();
    if (js_consumer) {
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Ordered = true;
        js = jetstream(nc, NULL);
        CHECK_JS(js_Subscribe(&sub, js, cfg.subj, on_msg, NULL, NULL, &so, &je_));
    } else {
        CHECK(natsConnection_Subscribe(&sub, nc, cfg.subj, on_msg, NULL));
    }
    CHECK(natsSubscription_SetPendingLimits(sub, -1, -1)); /* never drop client-side */
    while (atomic_load(&delivered) < cfg.n && now_ns() < deadline_ns) {
        progress(atomic_load(&delivered), cfg.n);
        nats_Sleep(1);
    }
    long long got = atomic_load(&delivered);
    int64_t dropped = 0;
    natsSubscription_GetDropped(sub, &dropped);
    double secs = got > 0 ? (atomic_load(&last_ns) - start) / 1e9 : (now_ns() - start) / 1e9;
    printf("{\"mode\":\"%s\",\"client\":\"nats.c %s\",\"msgs\":%lld,\"delivered\":%lld,"
           "\"dropped\":%lld,\"seconds\":%.6f,\"rate\":%.1f,\"complete\":%s}\n",
           cfg.mode, nats_GetVersion(), cfg.n, got, (long long)dropped, secs, secs > 0 ? got / secs : 0.0,
           got == cfg.n ? "true" : "false");
    fflush(stdout);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    if (js)
        jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* Responder callback: echo the request body to its reply subject. */
static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    const char *reply = natsMsg_GetReply(msg);
    if (reply != NULL)
        natsConnection_Publish(nc, reply, natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
}

/* One requester thread: takes the next request number until all are issued and sends
 * them one at a time. All threads share one requester connection (the client
 * multiplexes replies on one inbox subscription). */
static void *requester(void *arg)
{
    natsConnection *nc = arg;
    while (atomic_fetch_add(&issued, 1) < cfg.n && now_ns() < deadline_ns) {
        natsMsg *reply = NULL;
        int64_t tmo = remaining_ms() < 5000 ? remaining_ms() : 5000;
        natsStatus s = natsConnection_Request(&reply, nc, cfg.subj, payload, cfg.size, tmo);
        if (s == NATS_OK) {
            atomic_fetch_add(&completed, 1);
            natsMsg_Destroy(reply);
        } else {
            atomic_fetch_add(&errors, 1);
        }
    }
    return NULL;
}

static void run_reqrep(void)
{
    natsSubscription *sub;
    natsConnection *resp = connect_sub("natsbench-responder", true, 0);
    CHECK(natsConnection_Subscribe(&sub, resp, cfg.subj, on_request, NULL));
    CHECK(natsConnection_FlushTimeout(resp, 5000));
    natsConnection *req = connect_one("natsbench-requester", true);
    /* the responder echoes anything, so the probe is an ordinary request, not counted */
    int probes = cfg.sub_url != NULL ? probe_interest(req, cfg.subj, payload, cfg.size) : 0;

    pthread_t *th = calloc(cfg.workers, sizeof *th);
    int64_t start = now_ns();
    for (int i = 0; i < cfg.workers; i++)
        if (pthread_create(&th[i], NULL, requester, req) != 0)
            fail("pthread_create", NATS_ERR);
    for (int i = 0; i < cfg.workers; i++)
        pthread_join(th[i], NULL);
    double secs = (now_ns() - start) / 1e9;

    long long done = atomic_load(&completed), errs = atomic_load(&errors);
    printf("{\"mode\":\"reqrep\",\"client\":\"nats.c %s\",\"msgs\":%lld,\"size\":%d,\"workers\":%d,"
           "\"completed\":%lld,\"errors\":%lld,\"seconds\":%.6f,\"rate\":%.1f,"
           "\"mean_latency_us\":%.1f,\"probes\":%d,\"complete\":%s}\n",
           nats_GetVersion(), cfg.n, cfg.size, cfg.workers, done, errs, secs,
           secs > 0 ? done / secs : 0.0, done > 0 ? secs * 1e6 * cfg.workers / done : 0.0, probes,
           done == cfg.n ? "true" : "false");

    natsConnection_Destroy(req);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(resp);
    free(th);
}

/* ---- mq9pub: acknowledged publishes, a window of requests in flight ------------------ */

static pthread_mutex_t win_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t  win_cv = PTHREAD_COND_INITIALIZER;
static long long       in_flight;
static int64_t        *sent_at;      /* per request: when it was published (ns), 0 = answered */
static uint32_t       *latency_us;   /* per answered request, in answer order */
static size_t          inbox_len;

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    int64_t t = now_ns();
    const char *subj = natsMsg_GetSubject(msg);
    long long i = (strlen(subj) > inbox_len) ? atoll(subj + inbox_len + 1) : -1;
    const char *data = natsMsg_GetData(msg);
    int len = natsMsg_GetDataLength(msg);
    bool is_error = (data != NULL && len > 0 && memmem(data, len, "\"error\"", 7) != NULL)
                    || natsMsg_IsNoResponders(msg);
    pthread_mutex_lock(&win_mu);
    if (i >= 0 && i < cfg.n && sent_at[i] != 0) {
        int64_t lat = (t - sent_at[i]) / 1000;
        sent_at[i] = 0;
        in_flight--;
        if (is_error) {
            errors++;
            note_error(natsMsg_IsNoResponders(msg) ? "no responders" : data, len);
        } else {
            latency_us[completed++] = (uint32_t)(lat > 0xffffffffLL ? 0xffffffffLL : lat);
        }
        atomic_store(&last_ns, t);
        pthread_cond_signal(&win_cv);
    }
    pthread_mutex_unlock(&win_mu);
    natsMsg_Destroy(msg);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(uint32_t *sorted, long long count, double p)
{
    if (count <= 0)
        return 0.0;
    long long idx = (long long)(p * (count - 1) + 0.5);
    return sorted[idx] / 1000.0;
}

static void run_mq9pub(void)
{
    natsConnection *nc = connect_one("natsbench-mq9pub", cfg.workers <= 1);
    natsInbox *inbox;
    CHECK(natsInbox_Create(&inbox));
    inbox_len = strlen(inbox);
    char *wild = malloc(inbox_len + 3);
    sprintf(wild, "%s.*", inbox);
    natsSubscription *sub;
    CHECK(natsConnection_Subscribe(&sub, nc, wild, on_reply, NULL));
    CHECK(natsSubscription_SetPendingLimits(sub, -1, -1));
    CHECK(natsConnection_FlushTimeout(nc, 5000));
    sent_at = calloc(cfg.n, sizeof *sent_at);
    latency_us = calloc(cfg.n, sizeof *latency_us);
    char *reply = malloc(inbox_len + 24);

    int64_t start = now_ns();
    long long sent = 0;
    bool timed_out = false;
    for (; sent < cfg.n && !timed_out; sent++) {
        pthread_mutex_lock(&win_mu);
        while (in_flight >= cfg.workers) {
            if (now_ns() > deadline_ns) {
                timed_out = true;
                break;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50000000;
            if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
            pthread_cond_timedwait(&win_cv, &win_mu, &ts);
        }
        if (timed_out) {
            pthread_mutex_unlock(&win_mu);
            break;
        }
        in_flight++;
        sent_at[sent] = now_ns();
        long long done = completed + errors;
        pthread_mutex_unlock(&win_mu);
        sprintf(reply, "%s.%lld", inbox, sent);
        CHECK(natsConnection_PublishRequest(nc, subjects[sent % nsubjects], reply, payload, cfg.size));
        if ((sent & 255) == 0) {
            if (now_ns() > deadline_ns) {
                sent++;
                break;
            }
            progress(done, cfg.n);
        }
    }
    CHECK(natsConnection_Flush(nc));
    /* wait for the answers still owed */
    for (;;) {
        pthread_mutex_lock(&win_mu);
        long long owed = in_flight, done = completed + errors;
        pthread_mutex_unlock(&win_mu);
        if (owed == 0 || now_ns() > deadline_ns)
            break;
        progress(done, cfg.n);
        nats_Sleep(1);
    }
    natsSubscription_Unsubscribe(sub);  /* no callback runs after this returns... */
    pthread_mutex_lock(&win_mu);        /* ...but one may be inside: take the lock to read */
    long long done = completed, errs = errors, owed = in_flight;
    int64_t end = completed + errors > 0 ? atomic_load(&last_ns) : now_ns();
    pthread_mutex_unlock(&win_mu);
    double secs = (end - start) / 1e9;
    qsort(latency_us, done, sizeof *latency_us, cmp_u32);
    double sum = 0;
    for (long long i = 0; i < done; i++)
        sum += latency_us[i];
    printf("{\"mode\":\"mq9pub\",\"client\":\"nats.c %s\",\"msgs\":%lld,\"size\":%d,\"window\":%d,"
           "\"sent\":%lld,\"completed\":%lld,\"errors\":%lld,\"unanswered\":%lld,\"seconds\":%.6f,"
           "\"rate\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f,"
           "\"first_error\":\"%s\",\"complete\":%s}\n",
           nats_GetVersion(), cfg.n, cfg.size, cfg.workers, sent, done, errs, owed, secs,
           secs > 0 ? done / secs : 0.0, pct_ms(latency_us, done, 0.5), pct_ms(latency_us, done, 0.9),
           pct_ms(latency_us, done, 0.99), done ? latency_us[done - 1] / 1000.0 : 0.0,
           done ? sum / done / 1000.0 : 0.0, first_error,
           (done == cfg.n && errs == 0) ? "true" : "false");
    fflush(stdout);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    natsInbox_Destroy(inbox);
    free(wild);
    free(reply);
}

/* ---- jspub: JetStream async publish ------------------------------------------------- */

static void on_js_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    if (pa != NULL) {
        atomic_fetch_add(&completed, 1);
    } else {
        atomic_fetch_add(&errors, 1);
        if (pae != NULL) {
            const char *t = pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err);
            note_error(t, (int)strlen(t));
        }
    }
    atomic_store(&last_ns, now_ns());
    natsMsg_Destroy(msg);
}

static void run_jspub(void)
{
    natsConnection *nc = connect_one("natsbench-jspub", cfg.workers <= 1);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = cfg.workers;
    jo.PublishAsync.AckHandler = on_js_ack;
    jo.PublishAsync.StallWait = 1000;
    jo.Wait = 10000;
    jsCtx *js = jetstream(nc, &jo);

    int64_t start = now_ns();
    long long sent = 0;
    while (sent < cfg.n) {
        if ((sent & 255) == 0) {
            if (now_ns() > deadline_ns)
                break;
            progress(atomic_load(&completed) + atomic_load(&errors), cfg.n);
        }
        natsStatus s = js_PublishAsync(js, subjects[sent % nsubjects], payload, cfg.size, NULL);
        if (s == NATS_TIMEOUT) {  /* stalled at MaxPending for StallWait: try again, within the deadline */
            if (now_ns() > deadline_ns)
                break;
            progress(atomic_load(&completed) + atomic_load(&errors), cfg.n);
            continue;
        }
        if (s != NATS_OK)
            fail("js_PublishAsync", s);
        sent++;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = remaining_ms();
    natsStatus cs;
    while ((cs = js_PublishAsyncComplete(js, &po)) == NATS_TIMEOUT && now_ns() < deadline_ns) {
        progress(atomic_load(&completed) + atomic_load(&errors), cfg.n);
        po.MaxWait = remaining_ms() < 200 ? remaining_ms() : 200;
    }
    long long done = atomic_load(&completed), errs = atomic_load(&errors);
    int64_t end = done + errs > 0 ? atomic_load(&last_ns) : now_ns();
    double secs = (end - start) / 1e9;
    printf("{\"mode\":\"jspub\",\"client\":\"nats.c %s\",\"msgs\":%lld,\"size\":%d,\"window\":%d,"
           "\"sent\":%lld,\"completed\":%lld,\"errors\":%lld,\"seconds\":%.6f,\"rate\":%.1f,"
           "\"complete_status\":\"%s\",\"first_error\":\"%s\",\"complete\":%s}\n",
           nats_GetVersion(), cfg.n, cfg.size, cfg.workers, sent, done, errs, secs,
           secs > 0 ? done / secs : 0.0, natsStatus_GetText(cs), first_error,
           (done == cfg.n && errs == 0) ? "true" : "false");
    fflush(stdout);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* ---- load: publishes without reply, PING/PONG barrier every -b ----------------------- */

static void run_load(void)
{
    natsConnection *nc = connect_one("natsbench-load", false);
    int64_t start = now_ns();
    long long sent = 0, barriers_ok = 0;
    natsStatus fs = NATS_OK;
    while (sent < cfg.n && now_ns() < deadline_ns) {
        long long upto = sent + cfg.barrier;
        if (upto > cfg.n)
            upto = cfg.n;
        for (; sent < upto; sent++)
            CHECK(natsConnection_Publish(nc, subjects[sent % nsubjects], payload, cfg.size));
        fs = natsConnection_FlushTimeout(nc, remaining_ms());
        if (fs != NATS_OK)
            break;
        barriers_ok = sent;  /* mq9: everything up to here is committed */
        progress(barriers_ok, cfg.n);
    }
    double secs = (now_ns() - start) / 1e9;
    printf("{\"mode\":\"load\",\"client\":\"nats.c %s\",\"msgs\":%lld,\"size\":%d,\"barrier\":%lld,"
           "\"sent\":%lld,\"flushed\":%lld,\"seconds\":%.6f,\"rate\":%.1f,\"flush_status\":\"%s\","
           "\"complete\":%s}\n",
           nats_GetVersion(), cfg.n, cfg.size, cfg.barrier, sent, barriers_ok, secs,
           secs > 0 ? barriers_ok / secs : 0.0, natsStatus_GetText(fs),
           barriers_ok == cfg.n ? "true" : "false");
    fflush(stdout);
    natsConnection_Destroy(nc);
}

/* ---- work queues: mq9 queue group and JetStream pull consumer ------------------------- */

static unsigned char *task_seen;      /* one byte per task number */
static atomic_llong   distinct;       /* tasks handled at least once */
static atomic_llong   redelivered;    /* tasks seen again */
static atomic_int     wq_stop;

/* Tasks carry their number in the first bytes of the payload, so a redelivery is
 * counted once: "t<number>;xxxx...". */
static void make_task(char *buf, long long i)
{
    memset(buf, 'x', cfg.size);
    int len = snprintf(buf, cfg.size + 1, "t%lld;", i);
    if (len < cfg.size)
        buf[len] = 'x';  /* snprintf's NUL */
}

static void mark_task(natsMsg *msg)
{
    const char *d = natsMsg_GetData(msg);
    int len = natsMsg_GetDataLength(msg);
    long long i = (d != NULL && len > 1 && d[0] == 't') ? atoll(d + 1) : -1;
    if (i < 0 || i >= cfg.n)
        return;
    if (__atomic_exchange_n(&task_seen[i], 1, __ATOMIC_SEQ_CST) == 0) {
        atomic_fetch_add(&distinct, 1);
        atomic_store(&last_ns, now_ns());
    } else {
        atomic_fetch_add(&redelivered, 1);
    }
}

static void on_task(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    const char *reply = natsMsg_GetReply(msg);
    if (reply != NULL)
        natsConnection_Publish(nc, reply, "+ACK", 4);
    mark_task(msg);
    natsMsg_Destroy(msg);
}

struct jsworker {
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
    pthread_t th;
    long long fetch_errors;
};

static void *jsworker_main(void *arg)
{
    struct jsworker *w = arg;
    while (!atomic_load(&wq_stop) && now_ns() < deadline_ns) {
        natsMsgList list = {0};
        jsErrCode jerr = 0;
        natsStatus s = natsSubscription_Fetch(&list, w->sub, cfg.batch, 500, &jerr);
        if (s == NATS_OK) {
            for (int i = 0; i < list.Count; i++) {
                natsMsg_Ack(list.Msgs[i], NULL);
                mark_task(list.Msgs[i]);
            }
        } else if (s != NATS_TIMEOUT) {
            w->fetch_errors++;
            note_error(natsStatus_GetText(s), (int)strlen(natsStatus_GetText(s)));
            nats_Sleep(10);
        }
        natsMsgList_Destroy(&list);
    }
    return NULL;
}

static void run_wq(bool js_mode)
{
    int k = cfg.subs;
    task_seen = calloc(cfg.n, 1);
    struct jsworker *w = calloc(k, sizeof *w);
    const char *sub_subj = cfg.sub_subj ? cfg.sub_subj : cfg.subj;
    char stream[256] = "", consumer[256] = "";
    if (js_mode) {
        if (cfg.durable == NULL || strchr(cfg.durable, ':') == NULL) {
            fprintf(stderr, "jswq needs -D STREAM:CONSUMER\n");
            exit(2);
        }
        snprintf(stream, sizeof stream, "%.*s", (int)(strchr(cfg.durable, ':') - cfg.durable), cfg.durable);
        snprintf(consumer, sizeof consumer, "%s", strchr(cfg.durable, ':') + 1);
    }
    for (int i = 0; i < k; i++) {
        w[i].nc = connect_sub("natsbench-worker", false, i);
        if (js_mode) {
            jsSubOptions so;
            jsSubOptions_Init(&so);
            so.Stream = stream;
            so.Consumer = consumer;
            w[i].js = jetstream(w[i].nc, NULL);
            CHECK_JS(js_PullSubscribe(&w[i].sub, w[i].js, sub_subj, consumer, NULL, &so, &je_));
        } else {
            CHECK(natsConnection_QueueSubscribe(&w[i].sub, w[i].nc, sub_subj, cfg.queue, on_task, NULL));
            CHECK(natsSubscription_SetPendingLimits(w[i].sub, -1, -1));
        }
        CHECK(natsConnection_FlushTimeout(w[i].nc, 5000));
    }
    if (js_mode)
        for (int i = 0; i < k; i++)
            if (pthread_create(&w[i].th, NULL, jsworker_main, &w[i]) != 0)
                fail("pthread_create", NATS_ERR);

    natsConnection *prod = connect_one("natsbench-producer", false);
    char *task = malloc(cfg.size + 32);
    int64_t start = now_ns();
    long long sent = 0;
    for (; sent < cfg.n; sent++) {
        if ((sent & 1023) == 0) {
            if (now_ns() > deadline_ns)
                break;
            progress(atomic_load(&distinct), cfg.n);
        }
        make_task(task, sent);
        CHECK(natsConnection_Publish(prod, cfg.subj, task, cfg.size));
    }
    natsStatus fs = natsConnection_FlushTimeout(prod, remaining_ms());
    while (atomic_load(&distinct) < sent && now_ns() < deadline_ns) {
        progress(atomic_load(&distinct), cfg.n);
        nats_Sleep(1);
    }
    /* the workers' acks are on the wire (mq9: committed) once their flush returns; a worker
     * thread may still sit in a fetch that waits for more, which is not part of the run */
    bool acks_flushed = true;
    for (int i = 0; i < k; i++)
        acks_flushed &= natsConnection_FlushTimeout(w[i].nc, remaining_ms()) == NATS_OK;
    long long got = atomic_load(&distinct);
    int64_t end = now_ns();
    atomic_store(&wq_stop, 1);
    if (js_mode)
        for (int i = 0; i < k; i++)
            pthread_join(w[i].th, NULL);
    double secs = (end - start) / 1e9;
    long long fetch_errors = 0;
    for (int i = 0; i < k; i++)
        fetch_errors += w[i].fetch_errors;
    printf("{\"mode\":\"%s\",\"client\":\"nats.c %s\",\"msgs\":%lld,\"size\":%d,\"workers\":%d,"
           "\"sent\":%lld,\"distinct\":%lld,\"redelivered\":%lld,\"fetch_errors\":%lld,"
           "\"seconds\":%.6f,\"rate\":%.1f,\"flush_ok\":%s,\"acks_flushed\":%s,\"first_error\":\"%s\","
           "\"complete\":%s}\n",
           cfg.mode, nats_GetVersion(), cfg.n, cfg.size, k, sent, got, (long long)atomic_load(&redelivered),
           fetch_errors, secs, secs > 0 ? got / secs : 0.0, fs == NATS_OK ? "true" : "false",
           acks_flushed ? "true" : "false", first_error,
           (sent == cfg.n && got == cfg.n && fs == NATS_OK && acks_flushed) ? "true" : "false");
    fflush(stdout);
    natsConnection_Destroy(prod);
    for (int i = 0; i < k; i++) {
        natsSubscription_Unsubscribe(w[i].sub);
        natsSubscription_Destroy(w[i].sub);
        if (w[i].js)
            jsCtx_Destroy(w[i].js);
        natsConnection_Destroy(w[i].nc);
    }
    free(task);
    free(w);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: natsbench -m pub|fanout|reqrep|mq9pub|jspub|load|jsfanout|catchup|jscatchup|mq9wq|jswq\n"
            "                 [-u URL[,URL..]]\n"
            "                 [-U SUBSCRIBER_URL[,URL..]]\n"
            "                 [-S SUBJECT[,SUBJECT..]] [-R SUB_SUBJECT] [-n COUNT] [-s BYTES] [-k SUBSCRIBERS]\n"
            "                 [-w WORKERS|WINDOW] [-q QUEUE] [-D STREAM:CONSUMER] [-b BARRIER] [-B BATCH]\n"
            "                 [-t DEADLINE_SECONDS] [-p]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "m:u:U:S:R:n:s:k:w:t:q:D:b:B:ph")) != -1) {
        switch (c) {
        case 'm': cfg.mode = optarg; break;
        case 'u': cfg.url = optarg; break;
        case 'U': cfg.sub_url = optarg; break;
        case 'S': cfg.subj = optarg; break;
        case 'R': cfg.sub_subj = optarg; break;
        case 'n': cfg.n = atoll(optarg); break;
        case 's': cfg.size = atoi(optarg); break;
        case 'k': cfg.subs = atoi(optarg); break;
        case 'w': cfg.workers = atoi(optarg); break;
        case 't': cfg.timeout = atof(optarg); break;
        case 'q': cfg.queue = optarg; break;
        case 'D': cfg.durable = optarg; break;
        case 'b': cfg.barrier = atoll(optarg); break;
        case 'B': cfg.batch = atoi(optarg); break;
        case 'p': cfg.progress = 1; break;
        default: usage();
        }
    }
    if (cfg.n <= 0 || cfg.size < 0 || cfg.subs <= 0 || cfg.workers <= 0 || cfg.timeout <= 0
        || cfg.barrier <= 0 || cfg.batch <= 0)
        usage();

    nurls = split_list(strdup(cfg.url), urls, MAX_URLS);
    if (nurls == 0)
        usage();
    nsub_urls = split_list(strdup(cfg.sub_url ? cfg.sub_url : cfg.url), sub_urls, MAX_URLS);
    if (nsub_urls == 0)
        usage();
    nsubjects = split_list(strdup(cfg.subj), subjects, MAX_SUBJECTS);
    if (nsubjects == 0)
        usage();
    if (nsubjects == 1)
        cfg.subj = subjects[0];

    payload = malloc(cfg.size + 1);
    memset(payload, 'x', cfg.size);
    CHECK(nats_Open(-1));
    deadline_ns = now_ns() + (int64_t)(cfg.timeout * 1e9);

    if (strcmp(cfg.mode, "pub") == 0)
        run_pubsub(1, false);
    else if (strcmp(cfg.mode, "fanout") == 0)
        run_pubsub(cfg.subs, false);
    else if (strcmp(cfg.mode, "jsfanout") == 0)
        run_pubsub(cfg.subs, true);
    else if (strcmp(cfg.mode, "reqrep") == 0)
        run_reqrep();
    else if (strcmp(cfg.mode, "mq9pub") == 0)
        run_mq9pub();
    else if (strcmp(cfg.mode, "jspub") == 0)
        run_jspub();
    else if (strcmp(cfg.mode, "load") == 0)
        run_load();
    else if (strcmp(cfg.mode, "catchup") == 0)
        run_catchup(false);
    else if (strcmp(cfg.mode, "jscatchup") == 0)
        run_catchup(true);
    else if (strcmp(cfg.mode, "mq9wq") == 0)
        run_wq(false);
    else if (strcmp(cfg.mode, "jswq") == 0)
        run_wq(true);
    else
        usage();

    fflush(stdout);
    nats_CloseAndWait(2000);
    free(payload);
    return 0;
}
