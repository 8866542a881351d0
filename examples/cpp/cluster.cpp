// cluster.cpp: two mgha engines in one process form a cluster on loopback (C++17, through
// the RAII wrapper include/mgha.hpp).
//
//   c++ -std=c++17 -Iinclude examples/cpp/cluster.cpp -Ltarget/debug -lmgha -pthread -o cluster
//   LD_LIBRARY_PATH=target/debug ./cluster WORK_DIR
//
// Engine "a" creates the cluster and issues a join key; engine "b" joins as a Standby. A
// session on "a" publishes; a std::function subscribed on "b" sees the revision arrive. A
// publish on "b" throws mgha::Error with MGHA_READ_ONLY, naming "a". (Changing over, so that
// "b" becomes Active, is not in the C API yet.) WORK_DIR must exist and be empty.
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
         "\"\nlisten = \"127.0.0.1:0\"\nheartbeat_ms = 200\npeer_timeout_ms = 20000\n";
}

// The newest head b reported, shared between its event thread and main().
struct Head {
  std::mutex lock;
  std::condition_variable changed;
  std::uint64_t seq = 0;
};

int run(const std::string& work_dir) {
  std::cout << "libmgha " << mgha::version() << "\n";
  mgha::Engine a = mgha::Engine::init(node_config(work_dir, "a"));
  const std::string peer = a.peer_addr();
  mgha::Engine b = mgha::Engine::join(node_config(work_dir, "b"), peer, a.join_key(60000));
  std::cout << "a listens on " << peer << "; b joined\n";

  Head head;
  std::uint64_t subscription = b.subscribe([&head](const mgha::Event& event) {
    if (event.kind != MGHA_EVENT_REVISION_APPLIED) {
      return;
    }
    std::lock_guard<std::mutex> guard(head.lock);
    if (event.seq > head.seq) {
      head.seq = event.seq;
    }
    head.changed.notify_all();
  });

  std::uint64_t seq = 0;
  {
    mgha::Session session = a.session("alice");
    session.put_json(R"({"type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.1"}})");
    session.put_json(R"({"type": "group", "name": "web", "fields": {"members": ["web1"]}})");
    seq = session.publish("web tier");
  }
  std::cout << "a published revision " << seq << "\n";

  {
    std::unique_lock<std::mutex> guard(head.lock);
    if (!head.changed.wait_for(guard, std::chrono::seconds(120), [&] { return head.seq >= seq; })) {
      std::cerr << "b did not report revision " << seq << " in time\n";
      return 1;
    }
  }
  std::cout << "b applied revision " << seq << ": " << b.get_json("group", "web") << "\n";

  try {
    b.publish_json("bob", R"({"changes": [{"op": "delete", "type": "group", "name": "web"}]})");
    std::cerr << "b published although it is a Standby\n";
    return 1;
  } catch (const mgha::Error& e) {
    if (e.status() != MGHA_READ_ONLY || e.message().find("'a'") == std::string::npos) {
      std::cerr << "expected MGHA_READ_ONLY naming 'a', got " << e.what() << "\n";
      return 1;
    }
    std::cout << "b refused a publish: " << e.what() << "\n";
  }

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
