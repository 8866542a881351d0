/*
 * failover.c: one mgha engine per process, with automatic failover, driven line by line (C11).
 *
 *   cc -std=c11 -Iinclude examples/c/failover.c -Ltarget/debug -lmgha -pthread -o failover
 *   LD_LIBRARY_PATH=target/debug ./failover init CONFIG           # a new cluster's Primary
 *   LD_LIBRARY_PATH=target/debug ./failover join CONFIG PEER KEY  # a Secondary joins it
 *   LD_LIBRARY_PATH=target/debug ./failover run CONFIG            # opens the node again
 *
 * CONFIG is a node configuration file (docs/config.md). With `failover = "quorum"` (and
 * `quorum_listen`, `quorum_members`) or `failover = "etcd"` (and `etcd_endpoints`), the engine
 * takes part in automatic failover exactly as the daemon `mgha run` does: when the Active dies,
 * a Standby in another process becomes the Active and takes publishes; the old one, started
 * again with `run`, follows it as a Standby. The host does nothing for that but keep its engine
 * open: the engine's own threads renew or watch the arbiter's lease.
 *
 * Once the engine runs, the program prints `ready` and then answers one line per command read
 * on stdin, `ok ...` or `err STATUS_NAME message` (`err usage: ...` for a line it does not
 * understand), so that a test (or a person at a terminal) can drive several processes:
 *
 *   peer            ok HOST:PORT       the engine's peer address (for `join`)
 *   join-key        ok KEY             a one-time join key, valid 10 minutes (the Primary only)
 *   publish NAME    ok SEQ             publishes host NAME as one revision (MGHA_READ_ONLY on
 *                                      a Standby, MGHA_PEER when too few Standbys acknowledged
 *                                      a synchronous publish)
 *   role            ok ROLE EPOCH      active or standby, and the epoch
 *   get NAME        ok JSON            host NAME (MGHA_NOT_FOUND when absent)
 *   status          ok JSON            mgha_engine_status_json, on one line
 *   collisions      ok JSON            mgha_engine_collisions_json
 *   merge ID        ok SEQ             resolves collision branch ID by a three-way merge
 *   quit            ok                 closes the engine and exits 0 (so does end of input)
 *
 * NAME is 1 to 64 letters, digits, '-', '_' or '.', so it goes into JSON as is.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgha.h"

/* Longest command line; longer ones are refused, not split. */
#define LINE_MAX_BYTES 512
/* Longest config file the program reads (the library's own limit for a config file). */
#define CONFIG_MAX_BYTES (64 * 1024)
/* How long a join key stays valid. */
#define JOIN_KEY_TTL_MS 600000u

/* Answers `err STATUS_NAME message` for a failed call, on one line. */
static void reply_error(mgha_status status) {
  const char *message = mgha_last_error_message();
  printf("err %s ", mgha_status_name(status));
  for (; *message != '\0'; message++) {
    putchar(*message == '\n' || *message == '\r' ? ' ' : *message);
  }
  putchar('\n');
}

/* Answers `ok TEXT` and frees TEXT, or the error. TEXT is passed by address: it is written by
   the call that gives the status, and C does not order the evaluation of arguments. */
static void reply_string(mgha_status status, char **out) {
  char *text = *out;
  if (status != MGHA_OK) {
    reply_error(status);
    return;
  }
  printf("ok %s\n", text);
  mgha_string_free(text);
}

static void reply_seq(mgha_status status, uint64_t seq) {
  if (status != MGHA_OK) {
    reply_error(status);
    return;
  }
  printf("ok %" PRIu64 "\n", seq);
}

/* Whether NAME can go into a JSON string without escaping, and is not too long. */
static int valid_name(const char *name) {
  size_t length = strlen(name);
  if (length == 0 || length > 64) {
    return 0;
  }
  for (; *name != '\0'; name++) {
    char c = *name;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
             c == '_' || c == '.';
    if (!ok) {
      return 0;
    }
  }
  return 1;
}

/* Publishes host NAME. Its address only has to be valid, so it counts up. */
static void publish(mgha_engine *engine, const char *name) {
  static unsigned count = 0;
  char changeset[LINE_MAX_BYTES + 256];
  uint64_t seq = 0;
  mgha_status status;
  count++;
  snprintf(changeset, sizeof changeset,
           "{\"message\": \"%s\", \"changes\": [{\"op\": \"put\", \"type\": \"host\", \"name\": \"%s\", "
           "\"fields\": {\"ipv4-address\": \"10.%u.%u.%u\"}}]}",
           name, name, (count >> 16) & 255u, (count >> 8) & 255u, count & 255u);
  status = mgha_engine_publish_json(engine, "failover-example", changeset, &seq);
  reply_seq(status, seq);
}

/* `ok ROLE EPOCH` from the status document. Its first member is `node`, so the first "role"
   and "epoch" keys in the text are this node's own (compact JSON, keys in a fixed order). */
static void role(mgha_engine *engine) {
  char *status_json = NULL, role_name[16] = "";
  const char *role_at, *epoch_at;
  uint64_t epoch = 0;
  mgha_status status = mgha_engine_status_json(engine, &status_json);
  if (status != MGHA_OK) {
    reply_error(status);
    return;
  }
  role_at = strstr(status_json, "\"role\":\"");
  epoch_at = strstr(status_json, "\"epoch\":");
  if (role_at == NULL || epoch_at == NULL || sscanf(role_at + 8, "%15[a-z]", role_name) != 1 ||
      sscanf(epoch_at + 8, "%" SCNu64, &epoch) != 1) {
    printf("err unexpected status document\n");
  } else {
    printf("ok %s %" PRIu64 "\n", role_name, epoch);
  }
  mgha_string_free(status_json);
}

/* Reads the whole config file, which mgha_engine_init and _join take as text. */
static char *read_config(const char *path) {
  FILE *file = fopen(path, "rb");
  char *text = malloc(CONFIG_MAX_BYTES + 1);
  size_t length;
  if (file == NULL || text == NULL) {
    perror(path);
    exit(1);
  }
  length = fread(text, 1, CONFIG_MAX_BYTES + 1, file);
  fclose(file);
  if (length > CONFIG_MAX_BYTES) {
    fprintf(stderr, "%s: larger than %d bytes\n", path, CONFIG_MAX_BYTES);
    exit(1);
  }
  text[length] = '\0';
  return text;
}

/* One command line; returns 0 on `quit`. */
static int serve(mgha_engine *engine, char *line) {
  char *argument = strchr(line, ' ');
  char *text = NULL;
  uint64_t number = 0;
  if (argument != NULL) {
    *argument++ = '\0';
  }
  if (strcmp(line, "quit") == 0) {
    return 0;
  } else if (strcmp(line, "peer") == 0) {
    reply_string(mgha_engine_peer_addr(engine, &text), &text);
  } else if (strcmp(line, "join-key") == 0) {
    reply_string(mgha_engine_join_key(engine, JOIN_KEY_TTL_MS, &text), &text);
  } else if (strcmp(line, "role") == 0) {
    role(engine);
  } else if (strcmp(line, "status") == 0) {
    reply_string(mgha_engine_status_json(engine, &text), &text);
  } else if (strcmp(line, "collisions") == 0) {
    reply_string(mgha_engine_collisions_json(engine, &text), &text);
  } else if (strcmp(line, "publish") == 0 && argument != NULL && valid_name(argument)) {
    publish(engine, argument);
  } else if (strcmp(line, "get") == 0 && argument != NULL && valid_name(argument)) {
    reply_string(mgha_engine_get_json(engine, "host", argument, &text), &text);
  } else if (strcmp(line, "merge") == 0 && argument != NULL && sscanf(argument, "%" SCNu64, &number) == 1) {
    mgha_status status = mgha_engine_collision_resolve(engine, number, "merge", NULL, "failover-example", &number);
    reply_seq(status, number);
  } else {
    printf("err usage: unknown command or bad argument: %s\n", line);
  }
  return 1;
}

int main(int argc, char **argv) {
  mgha_engine *engine = NULL;
  mgha_status status;
  char line[LINE_MAX_BYTES];
  const char *mode = argc > 1 ? argv[1] : "";

  /* Every answer must reach the driver at once, also through a pipe. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(mode, "init") == 0 && argc == 3) {
    char *config = read_config(argv[2]);
    status = mgha_engine_init(config, &engine);
    free(config);
  } else if (strcmp(mode, "join") == 0 && argc == 5) {
    char *config = read_config(argv[2]);
    status = mgha_engine_join(config, argv[3], argv[4], &engine);
    free(config);
  } else if (strcmp(mode, "run") == 0 && argc == 3) {
    status = mgha_engine_open_path(argv[2], &engine);
  } else {
    fprintf(stderr, "usage: %s init CONFIG | join CONFIG PEER KEY | run CONFIG\n", argv[0]);
    return 2;
  }
  if (status != MGHA_OK) {
    reply_error(status);
    return 1;
  }
  printf("ready\n");

  while (fgets(line, sizeof line, stdin) != NULL) {
    size_t length = strlen(line);
    if (length > 0 && line[length - 1] == '\n') {
      line[--length] = '\0';
    } else if (!feof(stdin)) {
      int c;
      while ((c = getchar()) != EOF && c != '\n') {
      }
      printf("err usage: a line is at most %d bytes\n", LINE_MAX_BYTES - 2);
      continue;
    }
    if (!serve(engine, line)) {
      break;
    }
  }
  status = mgha_engine_close(engine);
  if (status != MGHA_OK) {
    reply_error(status);
    return 1;
  }
  printf("ok\n");
  return 0;
}
