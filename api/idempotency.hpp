// idempotency.hpp — the answers kept for Idempotency-Key (docs/http-api.md,
// "Idempotency-Key"). Pure: times come in; the file is written by the route
// (mta/http_api.cpp), which hands lines from here to it and reads them back
// at start.
//
// A request with an Idempotency-Key is looked up by (API key name, header
// value): keys of different API keys never meet.
//   begin()   fresh: nothing known, the entry is now "in progress" and the
//             caller must call finish() or forget() exactly once;
//             in_progress: the first request with this key has not been
//             answered yet (the route answers 409);
//             replay: the first answer, to be sent again as it was;
//             mismatch: the key was used with a different body (SHA-256 of
//             the request body compared; the route answers 422).
//   finish()  keeps the answer for kKeep and returns the line for the file.
//   forget()  drops an in-progress entry whose answer is not kept (401, 415,
//             429, 503 and failed commits: a retry should be tried again).
// Lines: "v1 TIME_US STATUS NAME KEYHEX REQHASH BODY\n", BODY the JSON answer
// (one line). load() skips lines it cannot read and entries older than
// kKeep (the file may end with half a line after a crash).
// Not thread-safe: the loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace sluice::api {

inline constexpr int64_t kIdempotencyKeep_us = 24ll * 3600 * 1'000'000;

// 1 to 255 printable ASCII characters (no space).
bool valid_idempotency_key(std::string_view key);

class IdempotencyStore {
 public:
  struct Answer {
    int status = 0;
    std::string body;
    int64_t time_us = 0;
    std::string request_hash;  // hex SHA-256 of the request body
  };
  enum class Kind { fresh, in_progress, replay, mismatch };
  struct Found {
    Kind kind;
    const Answer* answer = nullptr;  // replay
  };

  Found begin(const std::string& key_name, const std::string& key, const std::string& request_hash,
              int64_t now_us);
  std::string finish(const std::string& key_name, const std::string& key, Answer answer);
  void forget(const std::string& key_name, const std::string& key);

  // Reads a file's lines; returns how many entries were taken.
  size_t load(std::string_view text, int64_t now_us);
  // Drops entries older than kKeep (not the ones in progress).
  void expire(int64_t now_us);
  // Every kept entry as lines (to rewrite the file at start).
  std::string dump() const;
  size_t size() const { return entries_.size(); }

  static std::string line(const std::string& key_name, const std::string& key, const Answer& a);

 private:
  struct Entry {
    bool done = false;
    Answer answer;
  };
  std::map<std::pair<std::string, std::string>, Entry> entries_;
};

}  // namespace sluice::api
