/*
 * log_callback.c: the log callback as a C host uses it (C99, POSIX threads), as docs/c-api.md
 * ("Logging") describes it.
 *
 *   log_callback WORK_DIR
 *
 * Sets a callback that records, under a mutex, every log event's level, target and message;
 * opens an engine listening on loopback, which logs that it listens for peers (INFO, from a
 * target of the engine's crates) on one of its own threads; checks that event arrived with the
 * user pointer given. Then calls mgha_set_log_callback from inside the callback (refused with
 * MGHA_BUSY, since it would wait for itself), removes the callback, and checks that no call
 * arrives after the removal returned. Checks the version macros against
 * mgha_version_number(). Prints "ok" and exits 0 when all of that held.
 * ffi/tests/c_programs.rs compiles and runs it.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mgha.h"

#define CHECK(call)                                                                       \
  do {                                                                                    \
    mgha_status status_ = (call);                                                         \
    if (status_ != MGHA_OK) {                                                             \
      fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call,                  \
              mgha_status_name(status_), mgha_last_error_message());                      \
      exit(1);                                                                            \
    }                                                                                     \
  } while (0)

/* What the callback saw; user data that the library hands back unchanged. */
struct seen {
  pthread_mutex_t lock;
  int calls;
  int listening;          /* the engine's "listening for peers" INFO event */
  int nested_busy;        /* a set from inside the callback answered MGHA_BUSY */
  int nested_other;       /* ... or something else */
  int after_removal;      /* calls that began after the removal returned */
  int removed;
};

static void on_log(mgha_log_level level, const char *target, const char *message, void *user) {
  struct seen *seen = user;
  mgha_status nested = mgha_set_log_callback(NULL, NULL);
  pthread_mutex_lock(&seen->lock);
  seen->calls++;
  if (seen->removed) seen->after_removal++;
  if (level == MGHA_LOG_INFO && strncmp(target, "mgha", 4) == 0 && strstr(message, "listening for peers") != NULL) {
    seen->listening++;
  }
  if (nested == MGHA_BUSY) {
    seen->nested_busy++;
  } else {
    seen->nested_other++;
  }
  pthread_mutex_unlock(&seen->lock);
  printf("log %d %s: %s\n", (int)level, target, message);
  fflush(stdout);
}

static int listened(struct seen *seen) {
  pthread_mutex_lock(&seen->lock);
  int n = seen->listening;
  pthread_mutex_unlock(&seen->lock);
  return n;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: log_callback WORK_DIR\n");
    return 2;
  }
  if (mgha_version_number() != MGHA_VERSION_NUMBER ||
      MGHA_VERSION_NUMBER != MGHA_VERSION_MAJOR * 1000000 + MGHA_VERSION_MINOR * 1000 + MGHA_VERSION_PATCH ||
      strcmp(mgha_version(), MGHA_VERSION) != 0) {
    printf("version mismatch: header %s (%d), library %s (%u)\n", MGHA_VERSION, MGHA_VERSION_NUMBER, mgha_version(),
           (unsigned)mgha_version_number());
    return 1;
  }
  printf("version %s = %u\n", mgha_version(), (unsigned)mgha_version_number());

  static struct seen seen = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, 0};
  CHECK(mgha_set_log_callback(on_log, &seen));

  char config[4096];
  snprintf(config, sizeof config, "data_dir = \"%s/a\"\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n", argv[1]);
  mgha_engine *engine = NULL;
  CHECK(mgha_engine_init(config, &engine));

  /* The event is logged on the engine's sync thread as it binds; allow a slow machine 30 s. */
  for (int i = 0; i < 3000 && listened(&seen) == 0; i++) {
    struct timespec tick = {0, 10 * 1000 * 1000};
    nanosleep(&tick, NULL);
  }
  CHECK(mgha_set_log_callback(NULL, NULL));
  pthread_mutex_lock(&seen.lock);
  seen.removed = 1;
  pthread_mutex_unlock(&seen.lock);
  CHECK(mgha_engine_close(engine)); /* logs no more into the callback: it is removed */

  pthread_mutex_lock(&seen.lock);
  printf("calls %d, listening %d, nested MGHA_BUSY %d, nested other %d, after removal %d\n", seen.calls,
         seen.listening, seen.nested_busy, seen.nested_other, seen.after_removal);
  int good = seen.listening >= 1 && seen.nested_busy == seen.calls && seen.nested_other == 0 &&
             seen.after_removal == 0;
  pthread_mutex_unlock(&seen.lock);
  if (!good) return 1;
  printf("ok\n");
  return 0;
}
