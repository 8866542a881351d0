/*
 * cluster.c: two mgha engines in one process form a cluster on loopback (C99).
 *
 *   cc -std=c99 -Iinclude examples/c/cluster.c -Ltarget/debug -lmgha -pthread -o cluster
 *   LD_LIBRARY_PATH=target/debug ./cluster WORK_DIR
 *
 * Engine "a" creates the cluster (a Primary, Active) and issues a one-time join key; engine "b"
 * joins with it (a Secondary, Standby). A session on "a" publishes a revision; "b" receives it
 * and reports it through an event callback, which main() waits for on a condition variable.
 * Then a publish on "b" fails with MGHA_READ_ONLY and a message naming "a". A planned
 * changeover swaps the roles: "b" becomes Active, publishes a revision that "a" (now a Standby)
 * applies and reports through its own callback, and a publish on "a" fails naming "b".
 *
 * WORK_DIR must exist and be empty; the nodes' data directories are created under it.
 * Exit status 0 when every step went as described.
 *
 * MGHA_EXAMPLE_TIME_SCALE=N (an integer from 1 to 100, default 1) multiplies every timeout and
 * wait of the example (the engines' heartbeat, peer and changeover timeouts, the join key's
 * lifetime, how long main() waits for an event), for a slow runner: the test that runs the
 * example under valgrind sets it, since memcheck runs everything tens of times slower.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mgha.h"

/* Stops the program with the failing call, its status and the thread's last error message. */
#define CHECK(call)                                                                       \
  do {                                                                                    \
    mgha_status status_ = (call);                                                         \
    if (status_ != MGHA_OK) {                                                             \
      fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call,                  \
              mgha_status_name(status_), mgha_last_error_message());                      \
      exit(1);                                                                            \
    }                                                                                     \
  } while (0)

/* What a callback shares with main(): the newest head its engine reported. */
struct waiter {
  pthread_mutex_t lock;
  pthread_cond_t changed;
  uint64_t head;
};

/* Runs on the subscribed engine's event thread. The event and its JSON are valid only during
   the call. */
static void on_event(void *user_data, const mgha_event *event) {
  struct waiter *w = user_data;
  if (event->kind != MGHA_EVENT_REVISION_APPLIED) {
    return;
  }
  pthread_mutex_lock(&w->lock);
  if (event->seq > w->head) {
    w->head = event->seq;
  }
  pthread_cond_broadcast(&w->changed);
  pthread_mutex_unlock(&w->lock);
}

/* MGHA_EXAMPLE_TIME_SCALE, checked: 1 when unset. */
static long time_scale(void) {
  const char *text = getenv("MGHA_EXAMPLE_TIME_SCALE");
  char *end = NULL;
  long scale;
  if (text == NULL || *text == '\0') {
    return 1;
  }
  scale = strtol(text, &end, 10);
  if (*end != '\0' || scale < 1 || scale > 100) {
    fprintf(stderr, "MGHA_EXAMPLE_TIME_SCALE must be an integer from 1 to 100, not '%s'\n", text);
    exit(2);
  }
  return scale;
}

/* Waits until the callback reported head `seq`, for at most `seconds`; 1 when it did. */
static int wait_for_head(struct waiter *w, uint64_t seq, long seconds) {
  struct timespec deadline;
  int reached;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += seconds;
  pthread_mutex_lock(&w->lock);
  while (w->head < seq) {
    if (pthread_cond_timedwait(&w->changed, &w->lock, &deadline) != 0) {
      break;
    }
  }
  reached = w->head >= seq;
  pthread_mutex_unlock(&w->lock);
  return reached;
}

static char *node_config(const char *work_dir, const char *name, long scale) {
  /* Short heartbeats so the example runs quickly; generous peer and changeover timeouts so a
     loaded machine does not fail it. A slow runner scales all three (time_scale): the Active
     also dials each member every heartbeat, which under valgrind would be most of the work. */
  const char *format =
      "data_dir = \"%s/%s\"\nname = \"%s\"\nlisten = \"127.0.0.1:0\"\n"
      "heartbeat_ms = %ld\npeer_timeout_ms = %ld\nchangeover_timeout_ms = %ld\n";
  long heartbeat_ms = 200 * scale, peer_timeout_ms = 10000 * scale;
  long changeover_timeout_ms = 30000 * scale;
  int length = snprintf(NULL, 0, format, work_dir, name, name, heartbeat_ms, peer_timeout_ms,
                        changeover_timeout_ms);
  char *config = length < 0 ? NULL : malloc((size_t)length + 1);
  if (config == NULL) {
    perror("node_config");
    exit(1);
  }
  snprintf(config, (size_t)length + 1, format, work_dir, name, name, heartbeat_ms, peer_timeout_ms,
           changeover_timeout_ms);
  return config;
}

int main(int argc, char **argv) {
  mgha_engine *a = NULL, *b = NULL;
  mgha_session *session = NULL;
  char *config_a, *config_b, *peer = NULL, *key = NULL, *object = NULL;
  uint64_t subscription = 0, subscription_a = 0, seq = 0, refused_seq = 0;
  struct waiter waiter = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
  struct waiter waiter_a = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
  mgha_status status;
  long scale = time_scale();

  if (argc != 2) {
    fprintf(stderr, "usage: %s WORK_DIR\n", argv[0]);
    return 2;
  }
  printf("libmgha %s\n", mgha_version());
  config_a = node_config(argv[1], "a", scale);
  config_b = node_config(argv[1], "b", scale);

  /* a creates the cluster; b joins it with a one-time key through a's peer address. */
  CHECK(mgha_engine_init(config_a, &a));
  CHECK(mgha_engine_peer_addr(a, &peer));
  CHECK(mgha_engine_join_key(a, 60000 * (uint64_t)scale, &key));
  CHECK(mgha_engine_join(config_b, peer, key, &b));
  printf("a listens on %s; b joined\n", peer);
  CHECK(mgha_engine_subscribe(b, on_event, &waiter, &subscription));

  /* One session on a, two objects, one revision. */
  CHECK(mgha_session_begin(a, "alice", &session));
  CHECK(mgha_session_put_json(
      session, "{\"type\": \"host\", \"name\": \"web1\", \"fields\": {\"ipv4-address\": \"10.0.0.1\"}}"));
  CHECK(mgha_session_put_json(
      session, "{\"type\": \"group\", \"name\": \"web\", \"fields\": {\"members\": [\"web1\"]}}"));
  CHECK(mgha_session_publish(session, "web tier", &seq));
  mgha_session_free(session);
  printf("a published revision %llu\n", (unsigned long long)seq);

  if (!wait_for_head(&waiter, seq, 60 * scale)) {
    fprintf(stderr, "b did not report revision %llu in time\n", (unsigned long long)seq);
    return 1;
  }
  CHECK(mgha_engine_get_json(b, "group", "web", &object));
  printf("b applied revision %llu: %s\n", (unsigned long long)seq, object);
  mgha_string_free(object);

  /* b is a read-only Standby: its publish is refused, naming the Active, and the output is
     left untouched. */
  status = mgha_engine_publish_json(
      b, "bob", "{\"changes\": [{\"op\": \"delete\", \"type\": \"group\", \"name\": \"web\"}]}",
      &refused_seq);
  if (status != MGHA_READ_ONLY || refused_seq != 0 || strstr(mgha_last_error_message(), "'a'") == NULL) {
    fprintf(stderr, "expected MGHA_READ_ONLY naming 'a', got %s: %s\n", mgha_status_name(status),
            mgha_last_error_message());
    return 1;
  }
  printf("b refused a publish: %s: %s\n", mgha_status_name(status), mgha_last_error_message());

  /* A planned changeover hands the Active role to b: it blocks until b took over at a new
     epoch with a's head, so no revision is lost. Now b publishes, and a follows it. */
  CHECK(mgha_engine_subscribe(a, on_event, &waiter_a, &subscription_a));
  CHECK(mgha_engine_changeover(a, "b"));
  printf("changed over: b is the Active\n");
  CHECK(mgha_engine_publish_json(
      b, "bob",
      "{\"changes\": [{\"op\": \"put\", \"type\": \"host\", \"name\": \"web2\", "
      "\"fields\": {\"ipv4-address\": \"10.0.0.2\"}}]}",
      &seq));
  printf("b published revision %llu\n", (unsigned long long)seq);
  if (!wait_for_head(&waiter_a, seq, 60 * scale)) {
    fprintf(stderr, "a did not report revision %llu in time\n", (unsigned long long)seq);
    return 1;
  }
  CHECK(mgha_engine_get_json(a, "host", "web2", &object));
  printf("a applied revision %llu: %s\n", (unsigned long long)seq, object);
  mgha_string_free(object);

  refused_seq = 0;
  status = mgha_engine_publish_json(
      a, "alice", "{\"changes\": [{\"op\": \"delete\", \"type\": \"host\", \"name\": \"web2\"}]}",
      &refused_seq);
  if (status != MGHA_READ_ONLY || refused_seq != 0 || strstr(mgha_last_error_message(), "'b'") == NULL) {
    fprintf(stderr, "expected MGHA_READ_ONLY naming 'b', got %s: %s\n", mgha_status_name(status),
            mgha_last_error_message());
    return 1;
  }
  printf("a refused a publish: %s: %s\n", mgha_status_name(status), mgha_last_error_message());

  CHECK(mgha_engine_unsubscribe(a, subscription_a));
  CHECK(mgha_engine_unsubscribe(b, subscription));
  CHECK(mgha_engine_close(b));
  CHECK(mgha_engine_close(a));
  mgha_string_free(peer);
  mgha_string_free(key);
  free(config_a);
  free(config_b);
  printf("ok\n");
  return 0;
}
