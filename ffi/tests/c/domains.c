/*
 * domains.c: one node with two domains, each used through its own handle (C99, POSIX), as
 * docs/c-api.md ("Domains") describes it.
 *
 *   domains WORK_DIR
 *
 * Creates domains "red" and "blue" on one node, publishes in each through its handle, and
 * checks that their objects and revisions stay apart, that each status names its domain and
 * each handle's events are its domain's, that closing a domain handle leaves the node running
 * and ends the sessions begun on it (freeing one releases its locks),
 * that an unknown domain is MGHA_NOT_FOUND, that a delete is refused while the domain holds
 * objects and goes ahead forced (its handle then MGHA_NOT_FOUND, even once a domain of the same
 * name is created again), and that once the node's handle is closed a domain handle's calls
 * fail with MGHA_INVALID_ARGUMENT, while the node opens again with that handle still unclosed.
 * Prints "ok" and exits 0 when all of that held. ffi/tests/c_programs.rs compiles and runs it.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mgha.h"

/* How long to wait for an event, and for a closed node's stores to be free, in 50 ms steps. */
#define EVENT_WAIT_STEPS 600
#define REOPEN_WAIT_STEPS 200

#define CHECK(call)                                                                       \
  do {                                                                                    \
    mgha_status status_ = (call);                                                         \
    if (status_ != MGHA_OK) {                                                             \
      fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call,                  \
              mgha_status_name(status_), mgha_last_error_message());                      \
      exit(1);                                                                            \
    }                                                                                     \
  } while (0)

/* The call must return `expected`. */
#define EXPECT(expected, call)                                                            \
  do {                                                                                    \
    mgha_status status_ = (call);                                                         \
    if (status_ != (expected)) {                                                          \
      fprintf(stderr, "%s:%d: %s: expected %s, got %s: %s\n", __FILE__, __LINE__, #call, \
              mgha_status_name(expected), mgha_status_name(status_),                      \
              mgha_last_error_message());                                                 \
      exit(1);                                                                            \
    }                                                                                     \
    printf("%s: %s: %s\n", #call, mgha_status_name(status_), mgha_last_error_message());  \
  } while (0)

/* `text` must contain `part`; frees `text`. */
static void expect_in(char *text, const char *part, const char *what) {
  if (strstr(text, part) == NULL) {
    fprintf(stderr, "%s: expected %s in %s\n", what, part, text);
    exit(1);
  }
  printf("%s: has %s\n", what, part);
  mgha_string_free(text);
}

/* Revision events seen by the callback on a domain handle's event thread. */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t seen_seq = 0;

static void on_event(void *user_data, const mgha_event *event) {
  (void)user_data;
  if (event->kind == MGHA_EVENT_REVISION_APPLIED) {
    pthread_mutex_lock(&seen_lock);
    seen_seq = event->seq;
    pthread_mutex_unlock(&seen_lock);
  }
}

static uint64_t wait_for_event_seq(uint64_t seq) {
  struct timespec pause = {0, 50 * 1000 * 1000};
  uint64_t seen = 0;
  int step;
  for (step = 0; step < EVENT_WAIT_STEPS; step++) {
    pthread_mutex_lock(&seen_lock);
    seen = seen_seq;
    pthread_mutex_unlock(&seen_lock);
    if (seen >= seq) {
      break;
    }
    nanosleep(&pause, NULL);
  }
  return seen;
}

/* A put of red's web1, staged in sessions. */
#define WEB1_AGAIN "{\"type\": \"host\", \"name\": \"web1\", \"fields\": {\"ipv4-address\": \"10.0.1.9\"}}"

static uint64_t put_host(mgha_engine *engine, const char *name, const char *address) {
  char changes[256];
  uint64_t seq = 0;
  snprintf(changes, sizeof changes,
           "{\"changes\": [{\"op\": \"put\", \"type\": \"host\", \"name\": \"%s\", "
           "\"fields\": {\"ipv4-address\": \"%s\"}}]}",
           name, address);
  CHECK(mgha_engine_publish_json(engine, "alice", changes, &seq));
  return seq;
}

int main(int argc, char **argv) {
  mgha_engine *node = NULL, *red = NULL, *blue = NULL, *again = NULL, *missing = NULL;
  mgha_session *session = NULL;
  char *config, *json = NULL;
  const char *format = "data_dir = \"%s/a\"\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n";
  uint64_t seq = 0, subscription = 0, seen;
  struct timespec pause = {0, 50 * 1000 * 1000};
  mgha_status status;
  int length, step;

  if (argc != 2) {
    fprintf(stderr, "usage: %s WORK_DIR\n", argv[0]);
    return 2;
  }
  length = snprintf(NULL, 0, format, argv[1]);
  config = length < 0 ? NULL : malloc((size_t)length + 1);
  if (config == NULL) {
    perror("config");
    return 1;
  }
  snprintf(config, (size_t)length + 1, format, argv[1]);

  CHECK(mgha_engine_init(config, &node));
  CHECK(mgha_engine_domain_create(node, "{\"name\": \"red\"}", &json));
  expect_in(json, "\"here\":true", "created red");
  CHECK(mgha_engine_domain_create(node, "{\"name\": \"blue\", \"on\": [\"a\"]}", &json));
  expect_in(json, "\"role\":\"active\"", "created blue");
  EXPECT(MGHA_CONFLICT, mgha_engine_domain_create(node, "{\"name\": \"red\"}", &json));
  EXPECT(MGHA_INVALID_ARGUMENT, mgha_engine_domain_create(node, "{\"name\": \"../up\"}", &json));
  CHECK(mgha_engine_domains_json(node, &json));
  expect_in(json, "\"name\":\"blue\"", "domains");

  CHECK(mgha_engine_domain(node, "red", &red));
  CHECK(mgha_engine_domain(node, "blue", &blue));
  EXPECT(MGHA_NOT_FOUND, mgha_engine_domain(node, "green", &missing));
  if (missing != NULL) {
    fprintf(stderr, "a refused mgha_engine_domain wrote its output\n");
    return 1;
  }
  CHECK(mgha_engine_subscribe(blue, on_event, NULL, &subscription));

  /* Each domain has its own revisions, from 1, and its own objects. */
  seq = put_host(red, "web1", "10.0.1.1");
  if (seq != 1) {
    fprintf(stderr, "red's first revision is %llu, not 1\n", (unsigned long long)seq);
    return 1;
  }
  put_host(blue, "web1", "10.0.2.1");
  seq = put_host(blue, "web2", "10.0.2.2");
  if (seq != 2) {
    fprintf(stderr, "blue's second revision is %llu, not 2\n", (unsigned long long)seq);
    return 1;
  }
  CHECK(mgha_engine_get_json(red, "host", "web1", &json));
  expect_in(json, "10.0.1.1", "red's web1");
  CHECK(mgha_engine_get_json(blue, "host", "web1", &json));
  expect_in(json, "10.0.2.1", "blue's web1");
  EXPECT(MGHA_NOT_FOUND, mgha_engine_get_json(red, "host", "web2", &json));
  EXPECT(MGHA_NOT_FOUND, mgha_engine_get_json(node, "host", "web1", &json));
  CHECK(mgha_engine_status_json(red, &json));
  expect_in(json, "\"domain\":\"red\"", "red's status");
  CHECK(mgha_engine_status_json(blue, &json));
  expect_in(json, "\"domain\":\"blue\"", "blue's status");
  CHECK(mgha_engine_status_json(node, &json));
  expect_in(json, "\"domain\":\"global\"", "the node's status");
  seen = wait_for_event_seq(2);
  if (seen != 2) {
    fprintf(stderr, "blue's handle saw revision %llu, not 2\n", (unsigned long long)seen);
    return 1;
  }
  printf("blue's handle saw revision %llu\n", (unsigned long long)seen);
  /* Calls about the node act on the node from any handle. */
  CHECK(mgha_engine_members_json(blue, &json));
  expect_in(json, "\"name\":\"a\"", "members through blue");

  /* Closing a domain handle closes only it, and ends the sessions begun on it. */
  CHECK(mgha_session_begin(red, "alice", &session));
  CHECK(mgha_session_put_json(session, WEB1_AGAIN));
  CHECK(mgha_engine_close(red));
  EXPECT(MGHA_INVALID_ARGUMENT, mgha_engine_get_json(red, "host", "web1", &json));
  EXPECT(MGHA_INVALID_ARGUMENT, mgha_session_publish(session, "after its handle closed", &seq));
  mgha_session_free(session); /* releases its lock on web1 in the domain */
  put_host(node, "gw", "10.0.0.1");
  CHECK(mgha_engine_get_json(blue, "host", "web2", &json));
  mgha_string_free(json);
  CHECK(mgha_engine_domain(node, "red", &again));
  CHECK(mgha_engine_get_json(again, "host", "web1", &json));
  expect_in(json, "10.0.1.1", "red's web1 through a new handle");
  CHECK(mgha_session_begin(again, "alice", &session));
  CHECK(mgha_session_put_json(session, WEB1_AGAIN)); /* not MGHA_CONFLICT: the lock was released */
  mgha_session_free(session);

  /* A domain that holds objects is deleted only by force, with a backup first. */
  EXPECT(MGHA_CONFLICT, mgha_engine_domain_delete(node, "red", 0, &json));
  EXPECT(MGHA_INVALID_ARGUMENT, mgha_engine_domain_delete(node, "global", 1, &json));
  CHECK(mgha_engine_domain_delete(node, "red", 1, &json));
  expect_in(json, "\"backup\":", "forced delete");
  EXPECT(MGHA_NOT_FOUND, mgha_engine_get_json(again, "host", "web1", &json));
  EXPECT(MGHA_NOT_FOUND, mgha_engine_domain(node, "red", &missing));
  /* A domain created again under the same name is another domain: the old handle stays refused. */
  CHECK(mgha_engine_domain_create(node, "{\"name\": \"red\"}", &json));
  mgha_string_free(json);
  EXPECT(MGHA_NOT_FOUND, mgha_engine_get_json(again, "host", "web1", &json));
  CHECK(mgha_engine_close(again));

  /* The node's handle stops the node; its domain handles then fail cleanly. */
  CHECK(mgha_engine_close(node));
  EXPECT(MGHA_INVALID_ARGUMENT, mgha_engine_get_json(blue, "host", "web1", &json));
  EXPECT(MGHA_INVALID_ARGUMENT, mgha_engine_status_json(blue, &json));
  /* Nor does an unclosed domain handle keep a store open: the node opens again (its stores are
     let go as the node's last calls return, so a busy store is tried again for a while). */
  status = mgha_engine_open(config, &node);
  for (step = 0; status == MGHA_BUSY && step < REOPEN_WAIT_STEPS; step++) {
    nanosleep(&pause, NULL);
    status = mgha_engine_open(config, &node);
  }
  CHECK(status);
  CHECK(mgha_engine_domain(node, "blue", &again));
  CHECK(mgha_engine_get_json(again, "host", "web2", &json));
  expect_in(json, "10.0.2.2", "blue's web2 after the node opened again");
  EXPECT(MGHA_INVALID_ARGUMENT, mgha_engine_get_json(blue, "host", "web1", &json));
  CHECK(mgha_engine_close(blue));
  CHECK(mgha_engine_close(again));
  CHECK(mgha_engine_close(node));
  free(config);
  printf("ok\n");
  return 0;
}
