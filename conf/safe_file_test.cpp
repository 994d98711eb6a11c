// safe_file_test.cpp — unit tests for conf/safe_file: links are refused (or
// followed only in trusted directories), two-link files refused, FIFOs refused
// without blocking, modes and owners set on descriptors.
#include "conf/safe_file.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

using namespace sluice;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "safe_file_test.XXXXXX").string();
    path = ::mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

void write(const std::string& path, const std::string& data) { std::ofstream(path) << data; }

std::string contents(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST_CASE("open_file_at creates a file and opens it again") {
  TempDir t;
  auto dir = safe::open_dir(t.path);
  REQUIRE(dir);
  auto fd = safe::open_file_at(*dir, "lock", O_RDWR | O_CREAT, 0600);
  REQUIRE(fd);
  struct stat st;
  REQUIRE(::fstat(fd->get(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
  CHECK((::fcntl(fd->get(), F_GETFL) & O_NONBLOCK) == 0);
  CHECK(safe::open_file_at(*dir, "lock", O_RDWR | O_CREAT));
  CHECK_FALSE(safe::open_file_at(*dir, "lock", O_RDWR | O_CREAT | O_EXCL));
}

TEST_CASE("open_file_at never follows a symbolic link, existing target or not") {
  TempDir t;
  write(t / "target", "secret");
  REQUIRE(::symlink((t / "target").c_str(), (t / "lock").c_str()) == 0);
  REQUIRE(::symlink((t / "nowhere").c_str(), (t / "dangling").c_str()) == 0);
  auto dir = safe::open_dir(t.path);
  REQUIRE(dir);
  auto fd = safe::open_file_at(*dir, "lock", O_RDWR | O_CREAT);
  REQUIRE_FALSE(fd);
  CHECK(fd.error() == t / "lock" + ": is a symbolic link; refused (it is never followed)");
  CHECK_FALSE(safe::open_file_at(*dir, "dangling", O_RDWR | O_CREAT));
  CHECK_FALSE(fs::exists(t / "nowhere"));
  CHECK(contents(t / "target") == "secret");
}

TEST_CASE("open_file_at refuses a file with two links, a directory and a FIFO") {
  TempDir t;
  write(t / "a", "x");
  REQUIRE(::link((t / "a").c_str(), (t / "b").c_str()) == 0);
  REQUIRE(::mkdir((t / "d").c_str(), 0700) == 0);
  REQUIRE(::mkfifo((t / "fifo").c_str(), 0600) == 0);
  auto dir = safe::open_dir(t.path);
  REQUIRE(dir);
  auto two = safe::open_file_at(*dir, "b", O_RDONLY);
  REQUIRE_FALSE(two);
  CHECK(two.error().find("2 hard links; refused") != std::string::npos);
  CHECK_FALSE(safe::open_file_at(*dir, "d", O_RDONLY));
  auto fifo = safe::open_file_at(*dir, "fifo", O_RDONLY);  // must not block
  REQUIRE_FALSE(fifo);
  CHECK(fifo.error() == t / "fifo" + ": is not a regular file; refused");
}

TEST_CASE("make_dir_at sets mode and owner on the new directory, not on an existing one") {
  TempDir t;
  auto dir = safe::open_dir(t.path);
  REQUIRE(dir);
  const mode_t old = ::umask(077);
  auto made = safe::make_dir_at(*dir, "maildrop", 01730,
                                {geteuid() == 0 ? uid_t{65534} : uid_t(-1), gid_t(-1)});
  ::umask(old);
  REQUIRE(made);
  CHECK(made->created);
  struct stat st;
  REQUIRE(::stat((t / "maildrop").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 01730);
  if (geteuid() == 0) CHECK(st.st_uid == 65534);
  REQUIRE(::chmod((t / "maildrop").c_str(), 0700) == 0);
  auto again = safe::make_dir_at(*dir, "maildrop", 01730);
  REQUIRE(again);
  CHECK_FALSE(again->created);
  REQUIRE(::stat((t / "maildrop").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
}

TEST_CASE("open_dir_at and make_dir_at refuse a symbolic link to a directory") {
  TempDir t;
  REQUIRE(::mkdir((t / "real").c_str(), 0700) == 0);
  REQUIRE(::symlink((t / "real").c_str(), (t / "maildrop").c_str()) == 0);
  auto dir = safe::open_dir(t.path);
  REQUIRE(dir);
  auto d = safe::open_dir_at(*dir, "maildrop");
  REQUIRE_FALSE(d);
  CHECK(d.error().find("symbolic link") != std::string::npos);
  CHECK_FALSE(safe::make_dir_at(*dir, "maildrop", 0700, {0, 0}));
  write(t / "file", "");
  auto f = safe::open_dir_at(*dir, "file");
  REQUIRE_FALSE(f);
  CHECK(f.error() == t / "file" + ": is not a directory");
}

TEST_CASE("make_dirs creates missing components with the mode whatever the umask") {
  TempDir t;
  const mode_t old = ::umask(077);
  auto d = safe::make_dirs(t / "a/b/c", 0755);
  ::umask(old);
  REQUIRE(d);
  CHECK(d->path == t / "a/b/c");
  struct stat st;
  for (const char* p : {"a", "a/b", "a/b/c"}) {
    REQUIRE(::stat((t / p).c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0755);
  }
  CHECK(safe::make_dirs(t / "a/b/c", 0755));  // existing: fine
  CHECK(safe::open_dir(t / "a/b/c"));
  CHECK_FALSE(safe::open_dir(t / "a/missing"));
  CHECK_FALSE(safe::open_dir(t / "a/../a"));
}

TEST_CASE("a path follows links only in directories nobody else can write") {
  TempDir t;
  REQUIRE(::mkdir((t / "real").c_str(), 0700) == 0);
  REQUIRE(::mkdir((t / "open").c_str(), 0700) == 0);
  REQUIRE(::symlink((t / "real").c_str(), (t / "admin-link").c_str()) == 0);
  REQUIRE(::symlink((t / "real").c_str(), (t / "open/planted").c_str()) == 0);
  ::chmod(t.path.c_str(), 0755);
  CHECK(safe::open_dir(t / "admin-link"));       // t: ours, 0755
  CHECK(safe::make_dirs(t / "admin-link/sub", 0700));
  CHECK(fs::is_directory(t / "real/sub"));
  REQUIRE(::chmod((t / "open").c_str(), 01777) == 0);  // like /tmp: others can plant links
  auto planted = safe::open_dir(t / "open/planted");
  REQUIRE_FALSE(planted);
  CHECK(planted.error().find("symbolic link") != std::string::npos);
  CHECK_FALSE(safe::make_dirs(t / "open/planted/sub", 0700));
  CHECK_FALSE(fs::exists(t / "real/sub/sub"));
}

TEST_CASE("open_admin_file follows links but wants one regular file with one link") {
  TempDir t;
  write(t / "key.pem", "KEY");
  REQUIRE(::symlink((t / "key.pem").c_str(), (t / "live.pem").c_str()) == 0);
  auto fd = safe::open_admin_file(t / "live.pem");
  REQUIRE(fd);
  char buf[8] = {};
  CHECK(::read(fd->get(), buf, sizeof buf) == 3);
  REQUIRE(::link((t / "key.pem").c_str(), (t / "other.pem").c_str()) == 0);
  auto two = safe::open_admin_file(t / "live.pem");
  REQUIRE_FALSE(two);
  CHECK(two.error().find("2 hard links") != std::string::npos);
  CHECK_FALSE(safe::open_admin_file(t.path));
  CHECK_FALSE(safe::open_admin_file(t / "missing"));
}

TEST_CASE("check_owner and set_owner_mode work on the descriptor") {
  TempDir t;
  auto dir = safe::open_dir(t.path);
  REQUIRE(dir);
  auto fd = safe::open_file_at(*dir, "f", O_RDWR | O_CREAT, 0600);
  REQUIRE(fd);
  CHECK(safe::check_owner(fd->get(), t / "f", geteuid()));
  auto other = safe::check_owner(fd->get(), t / "f", geteuid() + 1);
  REQUIRE_FALSE(other);
  CHECK(other.error().find(t / "f" + ": belongs to uid") == 0);
  REQUIRE(safe::set_owner_mode(fd->get(), t / "f", {}, 0640));
  struct stat st;
  REQUIRE(::stat((t / "f").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);
}

TEST_CASE("own_socket_at changes the socket file, never what a link points to") {
  TempDir t;
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(s >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string path = t / "control.sock";
  std::memcpy(a.sun_path, path.data(), path.size());
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  auto dir = safe::open_dir(t.path);
  REQUIRE(dir);
  auto st = safe::own_socket_at(*dir, "control.sock", {}, 0660);
  REQUIRE(st);
  CHECK((st->st_mode & 07777) == 0660);
  CHECK(S_ISSOCK(st->st_mode));
  ::close(s);

  write(t / "target", "x");
  ::chmod((t / "target").c_str(), 0600);
  REQUIRE(::symlink((t / "target").c_str(), (t / "link.sock").c_str()) == 0);
  CHECK_FALSE(safe::own_socket_at(*dir, "link.sock", {}, 0666));
  CHECK_FALSE(safe::own_socket_at(*dir, "target", {}, 0666));
  struct stat tst;
  REQUIRE(::stat((t / "target").c_str(), &tst) == 0);
  CHECK((tst.st_mode & 07777) == 0600);
}
