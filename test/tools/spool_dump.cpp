// spool_dump — test tool: prints the messages in a spool as JSON, one per
// line: {"id","arrival_us","sender","recipients":[...],"size","message_id",
// "client_address","helo","smtputf8","requiretls","tls_optional",
// "body"?}; each recipient {"address","status","attempts","tls","last_reply"}. Opens the spool exactly as sluiced does
// (including recovery), so it must not run while sluiced uses the same spool.
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "queue/spool.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: spool_dump SPOOL_DIR [--body]\n");
    return 2;
  }
  bool body = argc > 2 && std::strcmp(argv[2], "--body") == 0;
  auto spool = sluice::queue::Spool::open({.dir = argv[1]});
  if (!spool) {
    std::fprintf(stderr, "spool_dump: %s\n", spool.error().c_str());
    return 1;
  }
  for (const auto& w : (*spool)->recovery_warnings()) std::fprintf(stderr, "warning: %s\n", w.c_str());
  for (const auto& env : (*spool)->messages()) {
    nlohmann::json j;
    j["id"] = env.id;
    j["arrival_us"] = env.arrival_us;
    j["sender"] = env.sender;
    j["size"] = env.size;
    j["message_id"] = env.message_id;
    j["client_address"] = env.client_address;
    j["helo"] = env.helo;
    j["smtputf8"] = env.smtputf8;
    j["requiretls"] = env.requiretls;
    j["tls_optional"] = env.tls_optional;
    j["body_type"] = static_cast<int>(env.body);
    j["attempts"] = env.attempts;
    j["next_attempt_us"] = env.next_attempt_us;
    auto& rs = j["recipients"] = nlohmann::json::array();
    for (const auto& r : env.recipients)
      rs.push_back({{"address", r.address},
                    {"status", std::string(sluice::queue::to_string(r.status))},
                    {"attempts", r.attempts},
                    {"tls", std::string(sluice::queue::to_string(r.tls))},
                    {"last_reply", r.last_reply}});
    if (body) {
      std::string content;
      auto ok = (*spool)->read_body(env.id, [&](std::string_view piece) { content.append(piece); });
      if (!ok) {
        std::fprintf(stderr, "spool_dump: %s: %s\n", env.id.c_str(), ok.error().c_str());
        return 1;
      }
      // Bodies may hold any 8-bit data, which JSON strings cannot: print hex.
      static const char* hex = "0123456789abcdef";
      std::string h;
      h.reserve(content.size() * 2);
      for (unsigned char c : content) {
        h.push_back(hex[c >> 4]);
        h.push_back(hex[c & 15]);
      }
      j["body_hex"] = h;
    }
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}
