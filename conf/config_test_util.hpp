// config_test_util.hpp — what the configuration unit tests share.
#pragma once

#include <string_view>

namespace sluice::conf::test {

// A valid file's first lines; tests append to it.
constexpr std::string_view kMinimal = R"(hostname = "mail.example.com"
[[listener]]
address = "127.0.0.1:25"
mode = "relay"
)";

}  // namespace sluice::conf::test
