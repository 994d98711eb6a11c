// maildrop_io_test.cpp — the durable maildrop write against a real
// directory, its error codes, and (when run as root) the setgid permission
// model itself: a user with only the sluicedrop group may drop into a mode
// 1730 directory, and loses that right once the privilege is dropped.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <sysexits.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "mta/sendmail/maildrop.hpp"
#include "mta/sendmail/maildrop_io.hpp"

using namespace sluice::sendmail;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/sluice-maildrop-test.XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

std::vector<std::string> names(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d))
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.push_back(e->d_name);
  ::closedir(d);
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `body` in a child process and returns its exit status (or -1).
template <typename F>
int in_child(F body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

const std::string kData = "SLUICE-MAILDROP 1\nsender\nrcpt a@b.org\nsize 4\n\nhi\r\n";

}  // namespace

TEST_CASE("write_maildrop writes the file under a fresh name, mode 0644, no .tmp left") {
  ::umask(022);
  TempDir dir;
  auto name = write_maildrop(dir.path, kData);
  REQUIRE(name);
  CHECK(valid_maildrop_file_name(*name));
  CHECK(names(dir.path) == std::vector<std::string>{*name});
  CHECK(slurp(dir.path + "/" + *name) == kData);
  struct stat st {};
  REQUIRE(::stat((dir.path + "/" + *name).c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0644);
  CHECK(S_ISREG(st.st_mode));
  CHECK(decode_maildrop(slurp(dir.path + "/" + *name)));

  auto second = write_maildrop(dir.path, kData);
  REQUIRE(second);
  CHECK(*second != *name);
  CHECK(names(dir.path).size() == 2);
}

TEST_CASE("a file size limit: EX_TEMPFAIL and nothing left behind (SIGXFSZ ignored)") {
  TempDir dir;
  const std::string big(256 * 1024, 'x');
  // In a child: the limit and the signal handlers must not leak into the
  // other tests.
  const int rc = in_child([&] {
    install_cleanup_handlers();
    rlimit lim{64 * 1024, 64 * 1024};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) return 100;
    auto r = write_maildrop(dir.path, big);
    if (r) return 101;
    if (r.error().message.find("try again later") == std::string::npos) return 102;
    return r.error().exit_code;
  });
  CHECK(rc == EX_TEMPFAIL);
  CHECK(names(dir.path).empty());
}

TEST_CASE("a stop signal after the file is queued exits EX_OK, before it EX_TEMPFAIL") {
  TempDir dir;
  const int queued = in_child([&] {
    install_cleanup_handlers();
    if (!write_maildrop(dir.path, kData)) return 100;
    ::raise(SIGTERM);
    return 101;
  });
  CHECK(queued == EX_OK);
  CHECK(names(dir.path).size() == 1);
  const int early = in_child([&] {
    install_cleanup_handlers();
    ::raise(SIGHUP);
    return 101;
  });
  CHECK(early == EX_TEMPFAIL);
}

TEST_CASE("a missing maildrop directory says so") {
  TempDir dir;
  auto r = write_maildrop(dir.path + "/maildrop", kData);
  REQUIRE_FALSE(r);
  CHECK(r.error().exit_code == EX_UNAVAILABLE);
  CHECK(r.error().message.find("has sluiced ever started?") != std::string::npos);
  CHECK(r.error().message.find(dir.path + "/maildrop") != std::string::npos);
}

TEST_CASE("a path that is not a directory") {
  TempDir dir;
  std::ofstream(dir.path + "/file") << "x";
  auto r = write_maildrop(dir.path + "/file", kData);
  REQUIRE_FALSE(r);
  CHECK(r.error().exit_code == EX_UNAVAILABLE);
}

TEST_CASE("permission denied is EX_NOPERM with the sluicedrop hint, nothing left behind") {
  TempDir dir;
  const std::string drop = dir.path + "/maildrop";
  REQUIRE(::mkdir(drop.c_str(), 0755) == 0);
  REQUIRE(::chmod(dir.path.c_str(), 0755) == 0);
  if (::geteuid() != 0) REQUIRE(::chmod(drop.c_str(), 0555) == 0);  // refused by the mode
  const int code = in_child([&] {
    if (::geteuid() == 0 && ::setresuid(65534, 65534, 65534) != 0) return 99;
    auto r = write_maildrop(drop, kData);
    if (r) return 98;
    if (r.error().message.find("sluicedrop") == std::string::npos) return 97;
    return r.error().exit_code;
  });
  CHECK(code == EX_NOPERM);
  CHECK(names(drop).empty());
}

TEST_CASE("the setgid model: group-only access to a 1730 directory, until dropped") {
  if (::geteuid() != 0) {
    WARN("not root: the setgid permission model is not exercised");
    return;
  }
  const gid_t drop_gid = 4242;  // stands for sluicedrop
  const uid_t user = 65534;
  const gid_t user_gid = 65534;
  TempDir dir;
  REQUIRE(::chmod(dir.path.c_str(), 0711) == 0);
  const std::string drop = dir.path + "/maildrop";
  REQUIRE(::mkdir(drop.c_str(), 0700) == 0);
  REQUIRE(::chown(drop.c_str(), 0, drop_gid) == 0);
  REQUIRE(::chmod(drop.c_str(), 01730) == 0);

  const int code = in_child([&] {
    // What the kernel gives a setgid binary run by `user`: real gid the
    // user's, effective and saved gid sluicedrop.
    if (::setgroups(0, nullptr) != 0) return 90;
    if (::setresgid(user_gid, drop_gid, drop_gid) != 0) return 91;
    if (::setresuid(user, user, user) != 0) return 92;
    if (!running_setgid()) return 93;
    if (::opendir(drop.c_str()) != nullptr) return 94;  // the group may not list it
    auto r = write_maildrop(drop, kData);              // directory sync via syncfs
    if (!r) return 95;
    if (!drop_setgid()) return 96;
    if (running_setgid() || ::getegid() != user_gid) return 97;
    gid_t rg, eg, sg;
    if (::getresgid(&rg, &eg, &sg) != 0 || sg != user_gid) return 98;  // saved gid gone too
    if (::setegid(drop_gid) == 0) return 99;                              // cannot come back
    auto again = write_maildrop(drop, kData);
    if (again || again.error().exit_code != EX_NOPERM) return 100;
    return 0;
  });
  CHECK(code == 0);
  const std::vector<std::string> files = names(drop);
  REQUIRE(files.size() == 1);
  struct stat st {};
  REQUIRE(::stat((drop + "/" + files[0]).c_str(), &st) == 0);
  CHECK(st.st_uid == user);  // the daemon learns the submitter from here
  CHECK(slurp(drop + "/" + files[0]) == kData);
}

TEST_CASE("drop_setgid is a no-op when not setgid") {
  REQUIRE_FALSE(running_setgid());
  CHECK(drop_setgid());
  CHECK_FALSE(running_setgid());
}

TEST_CASE("closed standard descriptors are reopened on /dev/null") {
  const int code = in_child([] {
    ::close(1);
    ::close(2);
    if (!ensure_standard_descriptors()) return 1;
    if (::fcntl(1, F_GETFD) < 0 || ::fcntl(2, F_GETFD) < 0) return 2;
    const int fd = ::open("/dev/null", O_RDONLY);
    return fd > 2 ? 0 : 3;
  });
  CHECK(code == 0);
}

TEST_CASE("login names, clock, time zone, randomness") {
  CHECK(login_name(0) == "root");
  CHECK(login_name(3999999999u) == "uid3999999999");
  CHECK(wall_clock_us() > 1'700'000'000'000'000);
  CHECK(random64() != random64());
  ::setenv("TZ", "UTC", 1);
  ::tzset();
  CHECK(utc_offset_at(1'769'435'761) == 0);
  ::setenv("TZ", "Europe/Berlin", 1);
  ::tzset();
  if (utc_offset_at(0) != 0) {  // zoneinfo installed
    CHECK(utc_offset_at(1'769'435'761) == 3600);   // January: CET
    CHECK(utc_offset_at(1'784'000'000) == 7200);   // July 2026: CEST
  }
  ::unsetenv("TZ");
  ::tzset();
}
