/*
 * fork.c: what a child forked from a process with an engine sees (C99, POSIX), as
 * docs/c-api.md ("fork") describes it.
 *
 *   fork WORK_DIR
 *
 * The parent opens an engine and a session, publishes, and forks. In the child every call on
 * the parent's handles returns MGHA_BUSY with a message about the fork, without publishing
 * anything; freeing the parent's session releases nothing, and mgha_engine_close returns at
 * once (an alarm kills the child if any call hangs). After the child exited, the parent's
 * engine and session work as before and close cleanly. Prints "ok" and exits 0 when all of
 * that held. ffi/tests/c_programs.rs compiles and runs it.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mgha.h"

/* How long the child may take before the alarm ends it, and the parent waits for it. */
#define CHILD_SECONDS_MAX 60

#define CHECK(call)                                                                       \
  do {                                                                                    \
    mgha_status status_ = (call);                                                         \
    if (status_ != MGHA_OK) {                                                             \
      fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call,                  \
              mgha_status_name(status_), mgha_last_error_message());                      \
      exit(1);                                                                            \
    }                                                                                     \
  } while (0)

static int refusals_missed = 0;

/* In the child: the call must be refused with MGHA_BUSY, its message naming the fork. */
static void refused(const char *what, mgha_status status) {
  const char *message = mgha_last_error_message();
  if (status == MGHA_BUSY && strstr(message, "fork") != NULL) {
    printf("child: %s: MGHA_BUSY: %s\n", what, message);
  } else {
    printf("child: %s: expected MGHA_BUSY about the fork, got %s: %s\n", what, mgha_status_name(status),
           message);
    refusals_missed++;
  }
}

static int child(mgha_engine *engine, mgha_session *session) {
  mgha_session *other = NULL;
  uint64_t seq = 0;
  char *json = NULL;

  alarm(CHILD_SECONDS_MAX);
  refused("mgha_session_begin", mgha_session_begin(engine, "child", &other));
  refused("mgha_engine_publish_json",
          mgha_engine_publish_json(engine, "child",
                                   "{\"changes\": [{\"op\": \"delete\", \"type\": \"host\", \"name\": \"web1\"}]}",
                                   &seq));
  refused("mgha_engine_get_json", mgha_engine_get_json(engine, "host", "web1", &json));
  refused("mgha_session_put_json on the parent's session",
          mgha_session_put_json(session, "{\"type\": \"host\", \"name\": \"lost\", "
                                         "\"fields\": {\"ipv4-address\": \"10.0.0.66\"}}"));
  refused("mgha_session_publish on the parent's session", mgha_session_publish(session, "from the child", &seq));
  if (other != NULL || seq != 0 || json != NULL) {
    printf("child: a refused call wrote an output\n");
    refusals_missed++;
  }
  mgha_session_free(session); /* releases nothing: the parent still owns the session */
  refused("mgha_engine_close", mgha_engine_close(engine));
  printf("child: done\n");
  fflush(stdout);
  return refusals_missed == 0 ? 0 : 1;
}

/* Waits for the child, for at most CHILD_SECONDS_MAX plus a margin; 1 when it exited 0. */
static int child_succeeded(pid_t pid) {
  struct timespec pause = {0, 50 * 1000 * 1000};
  int status = 0, waited;
  for (waited = 0; waited < (CHILD_SECONDS_MAX + 30) * 20; waited++) {
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      if (WIFEXITED(status)) {
        return WEXITSTATUS(status) == 0;
      }
      fprintf(stderr, "the child was killed by signal %d%s\n", WTERMSIG(status),
              WTERMSIG(status) == SIGALRM ? " (a call hung)" : "");
      return 0;
    }
    if (done < 0) {
      perror("waitpid");
      return 0;
    }
    nanosleep(&pause, NULL);
  }
  fprintf(stderr, "the child did not end\n");
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return 0;
}

int main(int argc, char **argv) {
  mgha_engine *engine = NULL;
  mgha_session *session = NULL;
  char *config, *json = NULL;
  const char *format = "data_dir = \"%s/a\"\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n";
  uint64_t seq = 0;
  pid_t pid;
  int length;

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

  CHECK(mgha_engine_init(config, &engine));
  CHECK(mgha_engine_publish_json(
      engine, "alice",
      "{\"changes\": [{\"op\": \"put\", \"type\": \"host\", \"name\": \"web1\", "
      "\"fields\": {\"ipv4-address\": \"10.0.0.1\"}}]}",
      &seq));
  CHECK(mgha_session_begin(engine, "alice", &session));
  CHECK(mgha_session_put_json(
      session, "{\"type\": \"host\", \"name\": \"web2\", \"fields\": {\"ipv4-address\": \"10.0.0.2\"}}"));

  fflush(stdout); /* the child must not print the parent's buffered output again */
  pid = fork();
  if (pid < 0) {
    perror("fork");
    return 1;
  }
  if (pid == 0) {
    exit(child(engine, session));
  }
  if (!child_succeeded(pid)) {
    fprintf(stderr, "the child's calls were not refused as documented\n");
    return 1;
  }
  printf("parent: the child exited\n");

  /* The parent's handles are untouched: the session the child freed still holds its change,
     and the engine publishes, reads and closes. */
  CHECK(mgha_session_put_json(
      session, "{\"type\": \"host\", \"name\": \"web3\", \"fields\": {\"ipv4-address\": \"10.0.0.3\"}}"));
  CHECK(mgha_session_publish(session, "after the fork", &seq));
  mgha_session_free(session);
  CHECK(mgha_engine_get_json(engine, "host", "web2", &json));
  printf("parent: revision %llu has %s\n", (unsigned long long)seq, json);
  mgha_string_free(json);
  if (mgha_engine_get_json(engine, "host", "lost", &json) != MGHA_NOT_FOUND) {
    fprintf(stderr, "the child's put reached the parent's session\n");
    return 1;
  }
  CHECK(mgha_engine_get_json(engine, "host", "web1", &json));
  mgha_string_free(json);
  CHECK(mgha_engine_close(engine));
  free(config);
  printf("ok\n");
  return 0;
}
