// cluster.cpp: two mgha engines in one process form a cluster on loopback (C++17, through
// the RAII wrapper include/mgha.hpp).
//
//   c++ -std=c++17 -Iinclude examples/cpp/cluster.cpp -Ltarget/debug -lmgha -pthread -o cluster
//   LD_LIBRARY_PATH=target/debug ./cluster WORK_DIR
//
// Engine "a" creates the cluster and issues a join key; engine "b" joins as a Standby. A
// session on "a" publishes; a std::function subscribed on "b" sees the revision arrive. A
// publish on "b" throws mgha::Error with MGHA_READ_ONLY, naming "a". Then a planned changeover
// swaps the roles: "b" publishes, "a" follows it, and a publish on "a" throws naming "b".
// Last, "b" creates a second domain held on itself alone and publishes in it through a handle
// on that domain, apart from the global domain's objects and revisions.
// WORK_DIR must exist and be empty.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <iostream>
#include <mutex>
#include <string>

#include "mgha.hpp"

namespace {

std::string node_config(const std::string& work_dir, const std::string& name) {
  return "data_dir = \"" + work_dir + "/" + name + "\"\nname = \"" + name +
         "\"\nlisten = \"127.0.0.1:0\"\nheartbeat_ms = 200\npeer_timeout_ms = 20000\n"
         "changeover_timeout_ms = 60000\n";
}

// The newest head an engine reported, shared between its event thread and main().
struct Head {
  std::mutex lock;
  std::condition_variable changed;
  std::uint64_t seq = 0;

  // A callback that records REVISION_APPLIED events here.
  mgha::Callback recorder() {
    return [this](const mgha::Event& event) {
      if (event.kind != MGHA_EVENT_REVISION_APPLIED) {
        return;
      }
      std::lock_guard<std::mutex> guard(lock);
      if (event.seq > seq) {
        seq = event.seq;
      }
      changed.notify_all();
    };
  }

  // Whether `target` was reported within two minutes.
  bool wait_for(std::uint64_t target) {
    std::unique_lock<std::mutex> guard(lock);
    return changed.wait_for(guard, std::chrono::seconds(120), [&] { return seq >= target; });
  }
};

// Publishes `changeset` on `engine` and returns whether it was refused as read-only, naming
// `active`.
bool refused_naming(const mgha::Engine& engine, const std::string& changeset, const std::string& active) {
  try {
    engine.publish_json("someone", changeset);
    std::cerr << "a Standby published\n";
    return false;
  } catch (const mgha::Error& e) {
    if (e.status() != MGHA_READ_ONLY || e.message().find("'" + active + "'") == std::string::npos) {
      std::cerr << "expected MGHA_READ_ONLY naming '" << active << "', got " << e.what() << "\n";
      return false;
    }
    std::cout << "refused a publish: " << e.what() << "\n";
    return true;
  }
}

int run(const std::string& work_dir) {
  std::cout << "libmgha " << mgha::version() << "\n";
  mgha::Engine a = mgha::Engine::init(node_config(work_dir, "a"));
  const std::string peer = a.peer_addr();
  mgha::Engine b = mgha::Engine::join(node_config(work_dir, "b"), peer, a.join_key(60000));
  std::cout << "a listens on " << peer << "; b joined\n";

  Head head, head_a;
  std::uint64_t subscription = b.subscribe(head.recorder());

  std::uint64_t seq = 0;
  {
    mgha::Session session = a.session("alice");
    session.put_json(R"({"type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.1"}})");
    session.put_json(R"({"type": "group", "name": "web", "fields": {"members": ["web1"]}})");
    seq = session.publish("web tier");
  }
  std::cout << "a published revision " << seq << "\n";

  if (!head.wait_for(seq)) {
    std::cerr << "b did not report revision " << seq << " in time\n";
    return 1;
  }
  std::cout << "b applied revision " << seq << ": " << b.get_json("group", "web") << "\n";
  if (!refused_naming(b, R"({"changes": [{"op": "delete", "type": "group", "name": "web"}]})", "a")) {
    return 1;
  }

  // A planned changeover: b becomes the Active with a's head; a follows it.
  std::uint64_t subscription_a = a.subscribe(head_a.recorder());
  a.changeover("b");
  std::cout << "changed over: b is the Active\n";
  seq = b.publish_json("bob", R"({"changes": [{"op": "put", "type": "host", "name": "web2",
                                   "fields": {"ipv4-address": "10.0.0.2"}}]})");
  if (!head_a.wait_for(seq)) {
    std::cerr << "a did not report revision " << seq << " in time\n";
    return 1;
  }
  std::cout << "a applied revision " << seq << ": " << a.get_json("host", "web2") << "\n";
  if (!refused_naming(a, R"({"changes": [{"op": "delete", "type": "host", "name": "web2"}]})", "b")) {
    return 1;
  }

  // A second domain, on b alone: its own objects and revisions, through a handle on it.
  b.domain_create_json(R"({"name": "lab", "on": ["b"]})");
  {
    mgha::Engine lab = b.domain("lab");
    std::uint64_t lab_seq = lab.publish_json("bob", R"({"changes": [{"op": "put", "type": "host", "name": "web9",
                                                        "fields": {"ipv4-address": "10.0.9.9"}}]})");
    std::cout << "domain lab published revision " << lab_seq << ": " << lab.get_json("host", "web9") << "\n";
  }  // closes the domain's handle only: b goes on

  a.unsubscribe(subscription_a);
  b.unsubscribe(subscription);
  b.close();
  a.close();
  std::cout << "ok\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " WORK_DIR\n";
    return 2;
  }
  try {
    return run(argv[1]);
  } catch (const mgha::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
