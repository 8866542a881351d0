/*
 * status_codes.c: provokes every status code of docs/c-api.md's table ("Errors") the way a C
 * host meets it, and checks that each call returns the code the guide documents (C99, POSIX).
 *
 *   status_codes WORK_DIR
 *
 * For each provocation it prints "provoked MGHA_<NAME>: <what>: <message>" when the call
 * returned the documented code, and "MISMATCH ..." otherwise. It ends with "ok" and exit status
 * 0 when every call matched. MGHA_PANIC is the one code it cannot provoke (only a bug returns
 * it). ffi/tests/c_programs.rs compiles and runs it, and checks its output against the table.
 *
 * WORK_DIR must exist and be empty; the nodes' data directories are created under it.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mgha.h"

static int mismatches = 0;

/* Compares a call's status with the documented one. Called with the call as an argument, so
   nothing runs between the call and the reading of its message. */
static void expect(const char *what, mgha_status got, mgha_status documented) {
  if (got == documented) {
    printf("provoked %s: %s: %s\n", mgha_status_name(documented), what, mgha_last_error_message());
  } else {
    printf("MISMATCH %s: got %s (%s), documented %s\n", what, mgha_status_name(got),
           mgha_last_error_message(), mgha_status_name(documented));
    mismatches++;
  }
}

/* Stops the program when a step the provocations rely on fails. */
static void need(const char *what, mgha_status status) {
  if (status != MGHA_OK) {
    fprintf(stderr, "%s: %s: %s\n", what, mgha_status_name(status), mgha_last_error_message());
    exit(1);
  }
}

static char *format_text(const char *format, const char *a, const char *b, const char *c) {
  int length = snprintf(NULL, 0, format, a, b, c);
  char *text = length < 0 ? NULL : malloc((size_t)length + 1);
  if (text == NULL) {
    perror("format_text");
    exit(1);
  }
  snprintf(text, (size_t)length + 1, format, a, b, c);
  return text;
}

/* Engine configuration for node `name` under `work_dir`, listening on `listen`. */
static char *node_config(const char *work_dir, const char *name, const char *listen) {
  char *dir = format_text("%s/%s%s", work_dir, name, "");
  char *config = format_text("data_dir = \"%s\"\nname = \"%s\"\nlisten = \"%s\"\n", dir, name, listen);
  free(dir);
  return config;
}

static int exists(const char *work_dir, const char *name) {
  struct stat st;
  char *path = format_text("%s/%s%s", work_dir, name, "");
  int found = stat(path, &st) == 0;
  free(path);
  return found;
}

/* A JSON object `{"type": "host", "name": NAME, "fields": {"ipv4-address": ..., "comments":
   "xxx..."}}` whose comments are `comment_bytes` long. */
static char *big_host(const char *name, size_t comment_bytes) {
  const char *head = "{\"type\": \"host\", \"name\": \"";
  const char *middle = "\", \"fields\": {\"ipv4-address\": \"10.0.0.9\", \"comments\": \"";
  const char *tail = "\"}}";
  size_t length = strlen(head) + strlen(name) + strlen(middle) + comment_bytes + strlen(tail);
  char *json = malloc(length + 1), *p = json;
  if (json == NULL) {
    perror("big_host");
    exit(1);
  }
  p += sprintf(p, "%s%s%s", head, name, middle);
  memset(p, 'x', comment_bytes);
  strcpy(p + comment_bytes, tail);
  return json;
}

/* A changeset of `changes` deletes. */
static char *many_deletes(size_t changes) {
  const char *one = "{\"op\": \"delete\", \"type\": \"host\", \"name\": \"h%07zu\"}";
  size_t each = strlen(one) + 8, i;
  char *json = malloc(32 + changes * each), *p = json;
  if (json == NULL) {
    perror("many_deletes");
    exit(1);
  }
  p += sprintf(p, "{\"changes\": [");
  for (i = 0; i < changes; i++) {
    p += sprintf(p, i == 0 ? "" : ", ");
    p += sprintf(p, one, i);
  }
  strcpy(p, "]}");
  return json;
}

int main(int argc, char **argv) {
  const char *work;
  char *config_a, *config_b, *config_c, *config_d, *config_b_busy, *config_busy_dir;
  char *peer = NULL, *key = NULL, *json = NULL, *object, *changeset, *path;
  mgha_engine *a = NULL, *b = NULL, *other = NULL;
  mgha_session *s1 = NULL, *s2 = NULL, *big = NULL;
  uint64_t seq = 0;
  mgha_status status;
  int i;
  FILE *garbage;
  char name[32];

  if (argc != 2) {
    fprintf(stderr, "usage: %s WORK_DIR\n", argv[0]);
    return 2;
  }
  work = argv[1];
  config_a = node_config(work, "a", "127.0.0.1:0");
  config_b = node_config(work, "b", "127.0.0.1:0");
  config_c = node_config(work, "c", "127.0.0.1:0");
  config_d = node_config(work, "d", "127.0.0.1:0");

  expect("mgha_engine_init of a new Primary", mgha_engine_init(config_a, &a), MGHA_OK);
  if (a == NULL) {
    return 1;
  }
  need("peer address", mgha_engine_peer_addr(a, &peer));
  need("publish web1",
       mgha_engine_publish_json(a, "alice",
                                "{\"changes\": [{\"op\": \"put\", \"type\": \"host\", \"name\": \"web1\", "
                                "\"fields\": {\"ipv4-address\": \"10.0.0.1\"}}]}",
                                &seq));

  expect("a NULL type", mgha_engine_get_json(a, NULL, "web1", &json), MGHA_NULL_ARGUMENT);
  expect("a name that is not UTF-8", mgha_engine_get_json(a, "host", "web\xff", &json), MGHA_INVALID_UTF8);
  expect("malformed changeset JSON", mgha_engine_publish_json(a, "alice", "{\"changes\": [", &seq),
         MGHA_INVALID_ARGUMENT);
  expect("an unknown config key", mgha_engine_open("data_dir = \"x\"\ncolour = \"blue\"\n", &other),
         MGHA_INVALID_ARGUMENT);
  expect("a host without an address",
         mgha_engine_publish_json(a, "alice",
                                  "{\"changes\": [{\"op\": \"put\", \"type\": \"host\", \"name\": \"bare\"}]}",
                                  &seq),
         MGHA_VALIDATION);
  expect("no such object", mgha_engine_get_json(a, "host", "nowhere", &json), MGHA_NOT_FOUND);

  need("session 1", mgha_session_begin(a, "alice", &s1));
  need("session 2", mgha_session_begin(a, "bob", &s2));
  need("session 1 puts web1",
       mgha_session_put_json(s1, "{\"type\": \"host\", \"name\": \"web1\", \"fields\": {\"ipv4-address\": \"10.0.0.2\"}}"));
  expect("an object another session holds",
         mgha_session_put_json(s2, "{\"type\": \"host\", \"name\": \"web1\", \"fields\": {\"ipv4-address\": \"10.0.0.3\"}}"),
         MGHA_CONFLICT);
  mgha_session_free(s1);
  mgha_session_free(s2);

  /* Limits (docs/changeset.md): 100,000 changes per revision; 1 MiB per object, checked when it
     is staged; 32 MiB of staged objects per session. */
  changeset = many_deletes(100001);
  expect("a changeset of 100,001 changes", mgha_engine_publish_json(a, "alice", changeset, &seq), MGHA_TOO_LARGE);
  free(changeset);
  need("big session", mgha_session_begin(a, "alice", &big));
  object = big_host("huge", 1100000);
  expect("staging an object over 1 MiB", mgha_session_put_json(big, object), MGHA_TOO_LARGE);
  free(object);
  for (i = 0; i < 32; i++) {
    sprintf(name, "big%02d", i);
    object = big_host(name, 1040000);
    need("staging an object of about 1 MB", mgha_session_put_json(big, object));
    free(object);
  }
  object = big_host("big32", 1040000);
  expect("staging past 32 MiB in one session", mgha_session_put_json(big, object), MGHA_TOO_LARGE);
  free(object);
  mgha_session_free(big);

  path = format_text("%s/%s%s", work, "garbage.backup", "");
  garbage = fopen(path, "wb");
  if (garbage == NULL || fputs("this is not a backup file, though it is long enough to have a header",
                               garbage) < 0 || fclose(garbage) != 0) {
    perror(path);
    return 1;
  }
  expect("verifying a file that is not a backup", mgha_backup_verify(path, &json), MGHA_CORRUPT);
  free(path);

  expect("opening a data directory another engine holds", mgha_engine_open(config_a, &other), MGHA_BUSY);

  /* A second node: b joins with a one-time key and is a Standby. */
  need("join key", mgha_engine_join_key(a, 60000, &key));
  need("b joins", mgha_engine_join(config_b, peer, key, &b));
  expect("mgha_session_begin on a Standby", mgha_session_begin(b, "bob", &s1), MGHA_READ_ONLY);
  expect("a publish on a Standby",
         mgha_engine_publish_json(b, "bob",
                                  "{\"changes\": [{\"op\": \"delete\", \"type\": \"host\", \"name\": \"web1\"}]}",
                                  &seq),
         MGHA_READ_ONLY);
  expect("resolving a collision on a Standby",
         mgha_engine_collision_resolve(b, 1, "keep-active", NULL, "bob", &seq), MGHA_READ_ONLY);

  /* Failed joins: the key was used (the peer refuses it), or is not a key at all. Neither
     leaves a data directory behind. */
  expect("joining with a used key", mgha_engine_join(config_c, peer, key, &other), MGHA_PEER);
  if (exists(work, "c")) {
    printf("MISMATCH the refused join left its data directory %s/c behind\n", work);
    mismatches++;
  }
  expect("joining with a malformed key", mgha_engine_join(config_d, peer, "mgha1.not-a-key", &other),
         MGHA_INVALID_ARGUMENT);
  if (exists(work, "d")) {
    printf("MISMATCH the malformed join left its data directory %s/d behind\n", work);
    mismatches++;
  }

  /* Reopening b on the port a listens on: the port is taken. */
  need("close b", mgha_engine_close(b));
  config_b_busy = node_config(work, "b", peer);
  expect("opening a node on a port in use", mgha_engine_open(config_b_busy, &other), MGHA_IO);

  /* A data directory that is a file. */
  path = format_text("%s/%s%s", work, "not-a-dir", "");
  garbage = fopen(path, "wb");
  if (garbage == NULL || fclose(garbage) != 0) {
    perror(path);
    return 1;
  }
  free(path);
  config_busy_dir = format_text("data_dir = \"%s/not-a-dir/e\"\nname = \"e\"\nlisten = \"%s\"\n", work,
                                "127.0.0.1:0", "");
  status = mgha_engine_init(config_busy_dir, &other);
  expect("creating a node under a file", status, MGHA_IO);

  printf("not provoked MGHA_PANIC: only a bug in the library returns it\n");
  need("close a", mgha_engine_close(a));
  mgha_string_free(peer);
  mgha_string_free(key);
  free(config_a);
  free(config_b);
  free(config_c);
  free(config_d);
  free(config_b_busy);
  free(config_busy_dir);
  if (mismatches != 0) {
    printf("%d mismatches\n", mismatches);
    return 1;
  }
  printf("ok\n");
  return 0;
}
