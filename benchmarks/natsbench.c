/*
 * natsbench: a small core-NATS load generator on the NATS C client (libnats).
 *
 *   natsbench -m pub    -u URL [-n MSGS] [-s BYTES]           one publisher, one subscriber
 *   natsbench -m fanout -u URL [-n MSGS] [-s BYTES] [-k SUBS]  one publisher, SUBS subscribers
 *   natsbench -m reqrep -u URL [-n REQS] [-s BYTES] [-w WORKERS] sequential requests per worker
 *
 * Common: -S SUBJECT (default "bench.core"), -t SECONDS overall deadline (default 60).
 * Every connection is its own TCP connection. The result is one JSON line on stdout;
 * on a deadline the run stops and reports what it got with "complete": false; on a
 * client error it prints {"error": ...} and exits 1.
 *
 * pub/fanout: the rate is deliveries (summed over subscribers) divided by the time from
 * the first publish to the last delivery. reqrep: completed round trips per second.
 *
 * Build: gcc -O2 -Wall -o natsbench natsbench.c -lnats -lpthread
 */
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
    const char *mode, *url, *subj;
    long long   n;        /* messages (pub/fanout) or requests (reqrep) */
    int         size;     /* payload bytes */
    int         subs;     /* subscriber connections (fanout) */
    int         workers;  /* concurrent requester threads (reqrep) */
    double      timeout;  /* overall deadline in seconds */
} cfg = {"pub", "nats://127.0.0.1:4222", "bench.core", 100000, 128, 10, 1, 60.0};

static char       *payload;
static int64_t     deadline_ns;
static atomic_llong delivered;   /* messages seen by all subscribers together */
static atomic_llong last_ns;     /* time of the latest delivery */
static atomic_llong issued;      /* requests handed out to requester threads */
static atomic_llong completed;   /* round trips that got a reply */
static atomic_llong errors;      /* requests that failed (timeout, no responders, ...) */

/* Print a JSON error line and exit; used for anything that makes the run meaningless. */
static void fail(const char *what, natsStatus s)
{
    printf("{\"mode\":\"%s\",\"error\":\"%s: %s\"}\n", cfg.mode, what, natsStatus_GetText(s));
    fflush(stdout);
    exit(1);
}
#define CHECK(call) do { natsStatus s_ = (call); if (s_ != NATS_OK) fail(#call, s_); } while (0)

static int64_t now_ns(void) { return nats_NowInNanoSeconds(); }
static int64_t remaining_ms(void)
{
    int64_t ms = (deadline_ns - now_ns()) / 1000000;
    return ms > 1 ? ms : 1;
}

/* One TCP connection. sendAsap=false lets the library coalesce publishes into large
 * writes (throughput); true writes each publish at once (request/reply latency). */
static natsConnection *connect_one(const char *name, bool send_asap)
{
    natsOptions *o;
    natsConnection *nc;
    CHECK(natsOptions_Create(&o));
    CHECK(natsOptions_SetURL(o, cfg.url));
    CHECK(natsOptions_SetName(o, name));
    CHECK(natsOptions_SetTimeout(o, 5000));          /* connect timeout, ms */
    CHECK(natsOptions_SetAllowReconnect(o, false));  /* a drop is a failure, not a pause */
    CHECK(natsOptions_SetSendAsap(o, send_asap));
    CHECK(natsConnection_Connect(&nc, o));
    natsOptions_Destroy(o);
    return nc;
}

/* Subscriber callback for pub/fanout: count and timestamp, nothing else. */
static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    atomic_fetch_add(&delivered, 1);
    atomic_store(&last_ns, now_ns());
    natsMsg_Destroy(msg);
}

/* pub (k = 1) and fanout (k = cfg.subs). */
static void run_pubsub(int k)
{
    natsConnection **subc = calloc(k, sizeof *subc);
    natsSubscription **subs = calloc(k, sizeof *subs);
    for (int i = 0; i < k; i++) {
        subc[i] = connect_one("natsbench-sub", false);
        CHECK(natsConnection_Subscribe(&subs[i], subc[i], cfg.subj, on_msg, NULL));
        CHECK(natsSubscription_SetPendingLimits(subs[i], -1, -1)); /* never drop client-side */
        CHECK(natsConnection_FlushTimeout(subc[i], 5000));         /* SUB is live on the server */
    }
    natsConnection *pub = connect_one("natsbench-pub", false);

    int64_t start = now_ns();
    long long sent = 0;
    for (; sent < cfg.n; sent++) {
        /* check the deadline every 4096 messages: a slow server must not hang us */
        if ((sent & 4095) == 0 && now_ns() > deadline_ns)
            break;
        CHECK(natsConnection_Publish(pub, cfg.subj, payload, cfg.size));
    }
    /* PING/PONG: when it returns, the server has read every publish */
    natsStatus fs = natsConnection_FlushTimeout(pub, remaining_ms());
    int64_t pub_end = now_ns();

    long long expected = sent * k;
    while (atomic_load(&delivered) < expected && now_ns() < deadline_ns)
        nats_Sleep(1);

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
           "\"seconds\":%.6f,\"rate\":%.1f,\"pub_rate\":%.1f,\"flush_ok\":%s,\"complete\":%s}\n",
           cfg.mode, nats_GetVersion(), cfg.n, cfg.size, k, sent, expected, got, (long long)dropped,
           secs, secs > 0 ? got / secs : 0.0, pub_secs > 0 ? sent / pub_secs : 0.0,
           fs == NATS_OK ? "true" : "false",
           (sent == cfg.n && got == expected && fs == NATS_OK) ? "true" : "false");

    natsConnection_Destroy(pub);
    for (int i = 0; i < k; i++) {
        natsSubscription_Destroy(subs[i]);
        natsConnection_Destroy(subc[i]);
    }
    free(subs);
    free(subc);
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
    natsConnection *resp = connect_one("natsbench-responder", true);
    CHECK(natsConnection_Subscribe(&sub, resp, cfg.subj, on_request, NULL));
    CHECK(natsConnection_FlushTimeout(resp, 5000));
    natsConnection *req = connect_one("natsbench-requester", true);

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
           "\"mean_latency_us\":%.1f,\"complete\":%s}\n",
           nats_GetVersion(), cfg.n, cfg.size, cfg.workers, done, errs, secs,
           secs > 0 ? done / secs : 0.0, done > 0 ? secs * 1e6 * cfg.workers / done : 0.0,
           done == cfg.n ? "true" : "false");

    natsConnection_Destroy(req);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(resp);
    free(th);
}

static void usage(void)
{
    fprintf(stderr, "usage: natsbench -m pub|fanout|reqrep [-u URL] [-S SUBJECT] [-n COUNT] [-s BYTES]\n"
                    "                 [-k SUBSCRIBERS] [-w WORKERS] [-t DEADLINE_SECONDS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "m:u:S:n:s:k:w:t:h")) != -1) {
        switch (c) {
        case 'm': cfg.mode = optarg; break;
        case 'u': cfg.url = optarg; break;
        case 'S': cfg.subj = optarg; break;
        case 'n': cfg.n = atoll(optarg); break;
        case 's': cfg.size = atoi(optarg); break;
        case 'k': cfg.subs = atoi(optarg); break;
        case 'w': cfg.workers = atoi(optarg); break;
        case 't': cfg.timeout = atof(optarg); break;
        default: usage();
        }
    }
    if (cfg.n <= 0 || cfg.size < 0 || cfg.subs <= 0 || cfg.workers <= 0 || cfg.timeout <= 0)
        usage();

    payload = malloc(cfg.size + 1);
    memset(payload, 'x', cfg.size);
    CHECK(nats_Open(-1));
    deadline_ns = now_ns() + (int64_t)(cfg.timeout * 1e9);

    if (strcmp(cfg.mode, "pub") == 0)
        run_pubsub(1);
    else if (strcmp(cfg.mode, "fanout") == 0)
        run_pubsub(cfg.subs);
    else if (strcmp(cfg.mode, "reqrep") == 0)
        run_reqrep();
    else
        usage();

    fflush(stdout);
    nats_CloseAndWait(2000);
    free(payload);
    return 0;
}
