// events.hpp — the obs::Events (obs/event.hpp) of the daemon's event sites,
// built from what those sites have: an accepted envelope, a refused
// command, a delivery verdict, an admin change. Each function logs the
// site's text line (unchanged) or the JSON events, and hands the events to
// the sinks (webhooks, metrics). Loop thread only.
#pragma once

#include <string>
#include <string_view>

#include "obs/event.hpp"
#include "queue/envelope.hpp"

namespace sluice::mta::events {

// A message committed: one reception event per recipient. `source` is
// "smtp:LISTENER", "maildrop" or "api"; `tls` "" when none.
void reception(const queue::Envelope& env, std::string_view source, std::string_view tls, std::string_view text);

// A command or request refused. `reply` is the whole reply ("550 5.7.1 ...").
void rejection(std::string_view source, std::string_view peer_name, std::string_view peer_address, int code,
               std::string_view enhanced, std::string_view reply_text, bool warning, std::string_view text);

// One recipient's verdict after a delivery attempt: `status` is what the
// recipient's envelope now says ("sent", "deferred", "bounced"); a bounce
// with a 4.x.x status is an expiry (given up after temporary failures).
// `relay` is how the attempt names the host ("mx.example.net[192.0.2.1]:25").
obs::Event verdict(const queue::Envelope& env, size_t recipient, std::string_view status, std::string_view dsn,
                   std::string_view reply, std::string_view relay, std::string_view tls, int64_t now_us);

// "ID: held" and the like from the control socket (mta/control/dispatcher.cpp).
void admin(std::string_view change, std::string_view text);

// "550 5.1.1 text" -> {550, "5.1.1", "text"}; a reply without a code keeps
// `fallback_enhanced` and all of the text.
obs::Response parse_reply(std::string_view reply, std::string_view fallback_enhanced = {});

}  // namespace sluice::mta::events
