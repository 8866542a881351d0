// mgha.hpp: a header-only C++17 wrapper over the C ABI in mgha.h (written by hand, not
// generated). Link against libmgha as for C.
//
//  - mgha::Engine and mgha::Session are move-only RAII handles: the destructor closes or frees.
//    Engine::domain gives an Engine on one domain of the same node; closing it closes only it.
//  - A failed call throws mgha::Error, carrying the status code and the library's message.
//  - Results are std::string (JSON text) or std::vector<std::uint8_t> (MessagePack).
//  - Engine::subscribe takes a std::function; the engine owns it until unsubscribe or close.
//
// Threading is the C API's (docs/c-api.md): an Engine may be used from several threads at once
// (but moved, closed or destroyed by one), a Session from one at a time, and callbacks run on
// the engine's event thread. Exceptions never cross into the library: one thrown by a callback
// is caught and dropped.
#ifndef MGHA_HPP
#define MGHA_HPP

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mgha.h"

namespace mgha {

// A failed call: what() is "MGHA_NAME: message".
class Error : public std::runtime_error {
 public:
  Error(mgha_status status, const std::string& message)
      : std::runtime_error(std::string(mgha_status_name(status)) + ": " + message),
        status_(status),
        message_(message) {}
  mgha_status status() const noexcept { return status_; }
  // The library's message alone.
  const std::string& message() const noexcept { return message_; }

 private:
  mgha_status status_;
  std::string message_;
};

namespace detail {

inline void check(mgha_status status) {
  if (status != MGHA_OK) {
    throw Error(status, mgha_last_error_message());
  }
}

// Calls f(char **out), checks its status, and returns the string, freed.
template <class F>
std::string string_out(F f) {
  char* out = nullptr;
  check(f(&out));
  std::string text(out);
  mgha_string_free(out);
  return text;
}

}  // namespace detail

// One event, copied out of the callback's arguments.
struct Event {
  std::uint32_t kind;  // an mgha_event_kind
  std::uint64_t seq;
  std::string json;
};

using Callback = std::function<void(const Event&)>;

// An admin session: stage puts and deletes, then publish or discard. Freed (and discarded if
// still open) by the destructor.
class Session {
 public:
  explicit Session(mgha_session* handle) noexcept : handle_(handle) {}
  Session(Session&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Session& operator=(Session&& other) noexcept {
    std::swap(handle_, other.handle_);
    return *this;
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session() { mgha_session_free(handle_); }

  void put_json(const std::string& object_json) { detail::check(mgha_session_put_json(handle_, object_json.c_str())); }
  void put_msgpack(const std::vector<std::uint8_t>& object) {
    detail::check(mgha_session_put_msgpack(handle_, object.data(), object.size()));
  }
  // Stages a delete (named `remove` because `delete` is a keyword).
  void remove(const std::string& type, const std::string& name_or_uid) {
    detail::check(mgha_session_delete(handle_, type.c_str(), name_or_uid.c_str()));
  }
  std::uint64_t publish(const std::string& message) {
    std::uint64_t seq = 0;
    detail::check(mgha_session_publish(handle_, message.c_str(), &seq));
    return seq;
  }
  void discard() { detail::check(mgha_session_discard(handle_)); }
  mgha_session* get() const noexcept { return handle_; }

 private:
  mgha_session* handle_;
};

// An open node, or one domain of it (Engine::domain). Closed by close() or the destructor.
class Engine {
 public:
  static Engine init(const std::string& config_toml) {
    mgha_engine* handle = nullptr;
    detail::check(mgha_engine_init(config_toml.c_str(), &handle));
    return Engine(handle);
  }
  static Engine join(const std::string& config_toml, const std::string& peer, const std::string& key) {
    mgha_engine* handle = nullptr;
    detail::check(mgha_engine_join(config_toml.c_str(), peer.c_str(), key.c_str(), &handle));
    return Engine(handle);
  }
  static Engine open(const std::string& config_toml) {
    mgha_engine* handle = nullptr;
    detail::check(mgha_engine_open(config_toml.c_str(), &handle));
    return Engine(handle);
  }
  static Engine open_path(const std::string& path) {
    mgha_engine* handle = nullptr;
    detail::check(mgha_engine_open_path(path.c_str(), &handle));
    return Engine(handle);
  }

  Engine(Engine&&) noexcept = default;
  Engine& operator=(Engine&& other) noexcept {
    std::swap(state_, other.state_);
    return *this;
  }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  ~Engine() {
    if (state_ && state_->handle) {
      mgha_engine_close(state_->handle);
    }
  }

  // Stops the engine and closes its store (on a domain's Engine: closes only that handle);
  // throws (closing nothing) when called from one of this engine's callbacks. Callbacks are
  // released afterwards.
  void close() {
    if (state_ && state_->handle) {
      detail::check(mgha_engine_close(state_->handle));
      state_->handle = nullptr;
      std::lock_guard<std::mutex> guard(state_->lock);
      state_->callbacks.clear();
    }
  }

  mgha_engine* get() const noexcept { return state_ ? state_->handle : nullptr; }

  std::string peer_addr() const {
    return detail::string_out([&](char** out) { return mgha_engine_peer_addr(get(), out); });
  }
  std::string join_key(std::uint64_t ttl_ms) const {
    return detail::string_out([&](char** out) { return mgha_engine_join_key(get(), ttl_ms, out); });
  }
  Session session(const std::string& author) const {
    mgha_session* handle = nullptr;
    detail::check(mgha_session_begin(get(), author.c_str(), &handle));
    return Session(handle);
  }
  std::uint64_t publish_json(const std::string& author, const std::string& changeset_json) const {
    std::uint64_t seq = 0;
    detail::check(mgha_engine_publish_json(get(), author.c_str(), changeset_json.c_str(), &seq));
    return seq;
  }
  std::uint64_t revert(const std::string& author, std::uint64_t to) const {
    std::uint64_t seq = 0;
    detail::check(mgha_engine_revert(get(), author.c_str(), to, &seq));
    return seq;
  }
  std::string get_json(const std::string& type, const std::string& key) const {
    return detail::string_out([&](char** out) { return mgha_engine_get_json(get(), type.c_str(), key.c_str(), out); });
  }
  std::vector<std::uint8_t> get_msgpack(const std::string& type, const std::string& key) const {
    std::uint8_t* out = nullptr;
    std::size_t len = 0;
    detail::check(mgha_engine_get_msgpack(get(), type.c_str(), key.c_str(), &out, &len));
    std::vector<std::uint8_t> bytes(out, out + len);
    mgha_bytes_free(out, len);
    return bytes;
  }
  // Objects of `type`, or of every type when `type` is empty; limit 0 is the library's cap.
  std::string list_json(const std::string& type = "", std::size_t limit = 0) const {
    const char* t = type.empty() ? nullptr : type.c_str();
    return detail::string_out([&](char** out) { return mgha_engine_list_json(get(), t, limit, out); });
  }
  std::string revisions_json(std::size_t limit = 0) const {
    return detail::string_out([&](char** out) { return mgha_engine_revisions_json(get(), limit, out); });
  }
  std::string revision_json(std::uint64_t seq) const {
    return detail::string_out([&](char** out) { return mgha_engine_revision_json(get(), seq, out); });
  }
  std::string diff_json(std::uint64_t from, std::uint64_t to) const {
    return detail::string_out([&](char** out) { return mgha_engine_diff_json(get(), from, to, out); });
  }
  std::string status_json() const {
    return detail::string_out([&](char** out) { return mgha_engine_status_json(get(), out); });
  }
  std::string check_json() const {
    return detail::string_out([&](char** out) { return mgha_engine_check_json(get(), out); });
  }
  void backup(const std::string& path) const { detail::check(mgha_engine_backup(get(), path.c_str())); }

  // Roles (docs/roles.md). A planned changeover to the member `target` blocks until done or
  // refused; a forced one makes this Standby the Active and returns the new epoch.
  void changeover(const std::string& target) const { detail::check(mgha_engine_changeover(get(), target.c_str())); }
  std::uint64_t changeover_force() const {
    std::uint64_t epoch = 0;
    detail::check(mgha_engine_changeover_force(get(), &epoch));
    return epoch;
  }
  void promote() const { detail::check(mgha_engine_promote(get())); }

  // Collision branches: a JSON array, one branch's diff, and a resolution. `how` is
  // "keep-active", "keep-branch", "merge", "merge-prefer-active" or "merge-prefer-branch";
  // `resolutions_json` is a resolution file, empty for none. Returns the revision published, 0
  // when nothing was.
  std::string collisions_json() const {
    return detail::string_out([&](char** out) { return mgha_engine_collisions_json(get(), out); });
  }
  std::string collision_diff_json(std::uint64_t id) const {
    return detail::string_out([&](char** out) { return mgha_engine_collision_diff_json(get(), id, out); });
  }
  std::uint64_t collision_resolve(std::uint64_t id, const std::string& how, const std::string& resolutions_json,
                                  const std::string& author) const {
    std::uint64_t seq = 0;
    const char* resolutions = resolutions_json.empty() ? nullptr : resolutions_json.c_str();
    detail::check(mgha_engine_collision_resolve(get(), id, how.c_str(), resolutions, author.c_str(), &seq));
    return seq;
  }

  // Plugins: install (or upgrade) a WebAssembly module, list, remove; each publish returns its
  // revision.
  std::uint64_t plugin_install(const std::string& author, const std::vector<std::uint8_t>& wasm) const {
    std::uint64_t seq = 0;
    detail::check(mgha_engine_plugin_install(get(), author.c_str(), wasm.data(), wasm.size(), &seq));
    return seq;
  }
  std::string plugin_list_json() const {
    return detail::string_out([&](char** out) { return mgha_engine_plugin_list_json(get(), out); });
  }
  std::uint64_t plugin_remove(const std::string& author, const std::string& name) const {
    std::uint64_t seq = 0;
    detail::check(mgha_engine_plugin_remove(get(), author.c_str(), name.c_str(), &seq));
    return seq;
  }

  // Domains (docs/c-api.md, "Domains"). domain() is a handle on the domain `name` of this
  // node ("global": the node's own): its calls act on that domain, those about the node on the
  // node; it must be closed (or destroyed) like any Engine, and closing it leaves the node open.
  // The others take and return the admin API's JSON bodies.
  Engine domain(const std::string& name) const {
    mgha_engine* handle = nullptr;
    detail::check(mgha_engine_domain(get(), name.c_str(), &handle));
    return Engine(handle);
  }
  std::string domains_json() const {
    return detail::string_out([&](char** out) { return mgha_engine_domains_json(get(), out); });
  }
  // `request_json` is {"name", "replicas"?, "on"?}; returns the new domain.
  std::string domain_create_json(const std::string& request_json) const {
    return detail::string_out(
        [&](char** out) { return mgha_engine_domain_create(get(), request_json.c_str(), out); });
  }
  // Refused while the domain holds objects unless `force` (a backup is written first).
  std::string domain_delete_json(const std::string& name, bool force = false) const {
    return detail::string_out(
        [&](char** out) { return mgha_engine_domain_delete(get(), name.c_str(), force ? 1u : 0u, out); });
  }
  std::string domain_move_json(const std::string& name, const std::string& from, const std::string& to) const {
    return detail::string_out(
        [&](char** out) { return mgha_engine_domain_move(get(), name.c_str(), from.c_str(), to.c_str(), out); });
  }
  // `retain_revisions` 0: each server's `retain_revisions` again.
  std::string domain_set_retention_json(const std::string& name, std::uint64_t retain_revisions) const {
    return detail::string_out(
        [&](char** out) { return mgha_engine_domain_set_retention(get(), name.c_str(), retain_revisions, out); });
  }
  std::string rebalance_json() const {
    return detail::string_out([&](char** out) { return mgha_engine_rebalance_json(get(), out); });
  }

  // Calls `callback` on the engine's event thread for every event until unsubscribe() or
  // close(). Returns the subscription id.
  std::uint64_t subscribe(Callback callback) {
    auto stored = std::make_unique<Callback>(std::move(callback));
    std::uint64_t id = 0;
    detail::check(mgha_engine_subscribe(get(), &Engine::trampoline, stored.get(), &id));
    std::lock_guard<std::mutex> guard(state_->lock);
    state_->callbacks.emplace(id, std::move(stored));
    return id;
  }
  // Removes a subscription; on return its callback is not running and never runs again. Not
  // from inside that same callback (it would be destroyed while it runs).
  void unsubscribe(std::uint64_t id) {
    detail::check(mgha_engine_unsubscribe(get(), id));
    std::lock_guard<std::mutex> guard(state_->lock);
    state_->callbacks.erase(id);
  }

 private:
  // Heap state, so that moving an Engine never moves what callbacks point at.
  struct State {
    mgha_engine* handle = nullptr;
    std::mutex lock;
    std::map<std::uint64_t, std::unique_ptr<Callback>> callbacks;
  };

  explicit Engine(mgha_engine* handle) : state_(std::make_unique<State>()) { state_->handle = handle; }

  static void trampoline(void* user_data, const mgha_event* event) noexcept {
    try {
      const Callback& callback = *static_cast<const Callback*>(user_data);
      callback(Event{event->kind, event->seq, std::string(event->json)});
    } catch (...) {
      // Nothing may unwind into the library; the host's callback reports its own failures.
    }
  }

  std::unique_ptr<State> state_;
};

// The library version.
inline std::string version() { return mgha_version(); }

// Checks a WebAssembly plugin module as install would; returns what it declares as JSON.
inline std::string plugin_check(const std::vector<std::uint8_t>& wasm) {
  return detail::string_out([&](char** out) { return mgha_plugin_check(wasm.data(), wasm.size(), out); });
}

}  // namespace mgha

#endif  // MGHA_HPP
