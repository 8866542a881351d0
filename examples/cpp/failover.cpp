// failover.cpp: one mgha engine per process, with automatic failover, driven line by line
// (C++17, through the RAII wrapper include/mgha.hpp). The same program as examples/c/failover.c.
//
//   c++ -std=c++17 -Iinclude examples/cpp/failover.cpp -Ltarget/debug -lmgha -pthread -o failover
//   LD_LIBRARY_PATH=target/debug ./failover init CONFIG           # a new cluster's Primary
//   LD_LIBRARY_PATH=target/debug ./failover join CONFIG PEER KEY  # a Secondary joins it
//   LD_LIBRARY_PATH=target/debug ./failover run CONFIG            # opens the node again
//
// CONFIG is a node configuration file (docs/config.md). With `failover = "quorum"` or
// `"etcd"` the engine takes part in automatic failover as the daemon does: when the Active's
// process dies, a Standby in another process becomes Active; the dead node, run again, follows
// it. The host only keeps its engine open.
//
// Once the engine runs the program prints `ready`, then answers each command on stdin with one
// line, `ok ...` or `err STATUS_NAME message` (`err usage: ...` for a line it does not
// understand):
//
//   peer | join-key | publish NAME | role | get NAME | status | collisions | merge ID | quit
//
// (see examples/c/failover.c for what each answers). NAME is 1 to 64 letters, digits, '-', '_'
// or '.'.
#include <cstdint>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "mgha.hpp"

namespace {

constexpr std::uint64_t kJoinKeyTtlMs = 600000;
constexpr const char* kAuthor = "failover-example";

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 64) {
    return false;
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.';
    if (!ok) {
      return false;
    }
  }
  return true;
}

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    throw std::runtime_error("cannot read " + path);
  }
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// `ROLE EPOCH` from the status document. Its first member is `node`, so the first "role" and
// "epoch" keys in the (compact) text are this node's own.
std::string role(const mgha::Engine& engine) {
  const std::string status = engine.status_json();
  const std::string role_key = "\"role\":\"", epoch_key = "\"epoch\":";
  std::size_t role_at = status.find(role_key), epoch_at = status.find(epoch_key);
  if (role_at == std::string::npos || epoch_at == std::string::npos) {
    throw std::runtime_error("unexpected status document");
  }
  role_at += role_key.size();
  std::string name = status.substr(role_at, status.find('"', role_at) - role_at);
  return name + " " + std::to_string(std::stoull(status.substr(epoch_at + epoch_key.size())));
}

// The answer to one command, after "ok"; an mgha::Error propagates.
std::string answer(const mgha::Engine& engine, const std::string& command, const std::string& argument) {
  static unsigned count = 0;
  if (command == "peer") {
    return engine.peer_addr();
  } else if (command == "join-key") {
    return engine.join_key(kJoinKeyTtlMs);
  } else if (command == "role") {
    return role(engine);
  } else if (command == "status") {
    return engine.status_json();
  } else if (command == "collisions") {
    return engine.collisions_json();
  } else if (command == "publish" && valid_name(argument)) {
    ++count;
    std::string address = "10." + std::to_string((count >> 16) & 255u) + "." + std::to_string((count >> 8) & 255u) +
                          "." + std::to_string(count & 255u);
    return std::to_string(engine.publish_json(
        kAuthor, "{\"message\": \"" + argument + "\", \"changes\": [{\"op\": \"put\", \"type\": \"host\", \"name\": \"" +
                     argument + "\", \"fields\": {\"ipv4-address\": \"" + address + "\"}}]}"));
  } else if (command == "get" && valid_name(argument)) {
    return engine.get_json("host", argument);
  } else if (command == "merge" && !argument.empty() && argument.find_first_not_of("0123456789") == std::string::npos) {
    return std::to_string(engine.collision_resolve(std::stoull(argument), "merge", "", kAuthor));
  }
  throw std::invalid_argument("unknown command or bad argument: " + command);
}

// One line per answer, whatever the message holds.
std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') {
      c = ' ';
    }
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  mgha::Engine engine = [&]() {
    try {
      if (mode == "init" && argc == 3) {
        return mgha::Engine::init(read_file(argv[2]));
      } else if (mode == "join" && argc == 5) {
        return mgha::Engine::join(read_file(argv[2]), argv[3], argv[4]);
      } else if (mode == "run" && argc == 3) {
        return mgha::Engine::open_path(argv[2]);
      }
      std::cerr << "usage: " << argv[0] << " init CONFIG | join CONFIG PEER KEY | run CONFIG\n";
      std::exit(2);
    } catch (const mgha::Error& e) {
      std::cout << "err " << mgha_status_name(e.status()) << " " << one_line(e.message()) << std::endl;
      std::exit(1);
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\n";
      std::exit(1);
    }
  }();
  // std::endl flushes: every answer must reach the driver at once, also through a pipe.
  std::cout << "ready" << std::endl;

  std::string line;
  while (std::getline(std::cin, line)) {
    std::size_t space = line.find(' ');
    std::string command = line.substr(0, space);
    std::string argument = space == std::string::npos ? "" : line.substr(space + 1);
    if (command == "quit") {
      break;
    }
    try {
      // The answer first: nothing is printed for a command that throws.
      const std::string text = answer(engine, command, argument);
      std::cout << "ok " << text << std::endl;
    } catch (const mgha::Error& e) {
      std::cout << "err " << mgha_status_name(e.status()) << " " << one_line(e.message()) << std::endl;
    } catch (const std::exception& e) {
      std::cout << "err usage: " << one_line(e.what()) << std::endl;
    }
  }
  try {
    engine.close();
  } catch (const mgha::Error& e) {
    std::cout << "err " << mgha_status_name(e.status()) << " " << one_line(e.message()) << std::endl;
    return 1;
  }
  std::cout << "ok" << std::endl;
  return 0;
}
