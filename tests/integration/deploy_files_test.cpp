// deploy/kubernetes (ConfigMap, Deployment, Service) and deploy/container/Containerfile, checked
// against each other and against forkd: the embedded forkd.yaml is valid, the probes and ports
// are the ones it configures, the stop fits in the grace period, the container runs what the
// image runs. Then that command runs for real as PID 1 of a PID namespace of its own (as in a
// pod), on the ConfigMap's file laid out as the kubelet mounts it (addresses moved to 127.0.0.1
// and the control socket to the temp dir), and is reloaded and stopped as Kubernetes would.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/units.hpp"
#include "tests/integration/harness.hpp"

namespace {

using namespace forkd::test;
using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

// What the kubelet adds to the TERM it sends: nothing is left once the grace period is over.
// stop.delay + worker.shutdown_timeout + this must fit in terminationGracePeriodSeconds.
constexpr auto kGraceMargin = 5s;
// A Pod's terminationGracePeriodSeconds when the manifest leaves it out.
constexpr auto kDefaultGracePeriod = 30s;

fs::path deploy_dir() {
  return source_dir() / "deploy";
}

// Every document of every *.yaml file in deploy/kubernetes (what `kubectl apply -f` reads),
// by kind; each kind appears once.
std::map<std::string, YAML::Node> load_manifests() {
  std::map<std::string, YAML::Node> by_kind;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(deploy_dir() / "kubernetes")) {
    if (entry.path().extension() == ".yaml") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    for (const auto& doc : YAML::LoadAllFromFile(file.string())) {
      if (!doc.IsMap()) continue;
      const auto kind = doc["kind"].as<std::string>();
      EXPECT_EQ(by_kind.count(kind), 0U) << "a second " << kind << " in " << file;
      by_kind[kind] = doc;
    }
  }
  return by_kind;
}

// The instructions of the Containerfile that matter here, continuation lines joined.
struct Containerfile {
  std::string from;
  std::vector<std::string> copy;
  std::vector<std::string> run;
  std::string stop_signal;
  std::set<std::uint16_t> exposed;
  std::optional<json> entrypoint;  // as written: an array (exec form) or a string (shell form)
  std::optional<json> cmd;
};

Containerfile load_containerfile() {
  Containerfile file;
  std::istringstream lines(read_text((deploy_dir() / "container" / "Containerfile").string()));
  std::string instruction;
  for (std::string line; std::getline(lines, line);) {
    if (instruction.empty() && (line.empty() || line.front() == '#')) continue;
    if (!line.empty() && line.back() == '\\') {
      instruction += line.substr(0, line.size() - 1);
      continue;
    }
    instruction += line;
    const auto space = instruction.find(' ');
    const std::string keyword = instruction.substr(0, space);
    std::string rest = space == std::string::npos ? "" : instruction.substr(space + 1);
    instruction.clear();
    const auto as_json = [](const std::string& text) {
      return text.starts_with("[") ? json::parse(text) : json(text);
    };
    if (keyword == "FROM") file.from = rest;
    if (keyword == "COPY") file.copy.push_back(rest);
    if (keyword == "RUN") file.run.push_back(rest);
    if (keyword == "STOPSIGNAL") file.stop_signal = rest;
    if (keyword == "ENTRYPOINT") file.entrypoint = as_json(rest);
    if (keyword == "CMD") file.cmd = as_json(rest);
    if (keyword == "EXPOSE") {
      std::istringstream ports(rest);
      for (std::string port; ports >> port;) {
        file.exposed.insert(static_cast<std::uint16_t>(std::stoi(port)));
      }
    }
  }
  return file;
}

std::vector<std::string> strings(const YAML::Node& seq) {
  std::vector<std::string> out;
  for (const auto& item : seq) out.push_back(item.as<std::string>());
  return out;
}

std::vector<std::string> strings(const json& array) {
  return array.get<std::vector<std::string>>();
}

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

// The number a probe's or Service's port names: a number, or the name of a containerPort.
std::uint16_t container_port(const YAML::Node& container, const YAML::Node& port) {
  if (port.IsScalar() && std::isdigit(static_cast<unsigned char>(port.Scalar().front()))) {
    return port.as<std::uint16_t>();
  }
  for (const auto& p : container["ports"]) {
    if (p["name"] && p["name"].as<std::string>() == port.as<std::string>()) {
      return p["containerPort"].as<std::uint16_t>();
    }
  }
  ADD_FAILURE() << "no containerPort named " << port;
  return 0;
}

bool labels_match(const YAML::Node& selector, const YAML::Node& labels) {
  if (!selector.IsMap() || selector.size() == 0) return false;
  for (const auto& kv : selector) {
    const auto key = kv.first.as<std::string>();
    if (!labels[key] || labels[key].as<std::string>() != kv.second.as<std::string>()) return false;
  }
  return true;
}

// What `forkd --print-config` says the file means, every default filled in.
YAML::Node effective_config(const std::string& path) {
  const auto r = run_command({forkd_bin(), "--print-config", "-c", path}, 30s);
  EXPECT_EQ(r.exit_code(), 0) << describe_status(r.status) << "\n" << r.err;
  return r.exit_code() == 0 ? YAML::Load(r.out) : YAML::Node();
}

// The one listen entry's address, written as a string or as a mapping.
std::string listen_address(const YAML::Node& config) {
  EXPECT_TRUE(config["listen"].IsSequence() && config["listen"].size() == 1U) << config;
  const auto entry = config["listen"][0];
  return entry.IsMap() ? entry["address"].as<std::string>() : entry.as<std::string>();
}

std::chrono::milliseconds duration(const YAML::Node& node) {
  return forkd::common::parse_duration(node.as<std::string>());
}

// The manifests and the Containerfile, with the pieces every test looks at.
class DeployFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::is_directory(deploy_dir() / "kubernetes")) << deploy_dir();
    manifests_ = load_manifests();
    for (const char* kind : {"ConfigMap", "Deployment", "Service"}) {
      ASSERT_EQ(manifests_.count(kind), 1U) << "no " << kind << " in deploy/kubernetes";
    }
    pod_ = manifests_["Deployment"]["spec"]["template"]["spec"];
    ASSERT_TRUE(pod_["containers"].IsSequence() && pod_["containers"].size() == 1U)
        << "one container: forkd is the pod's only process tree";
    container_ = pod_["containers"][0];
    image_ = load_containerfile();
    ASSERT_TRUE(image_.entrypoint.has_value()) << "the Containerfile has no ENTRYPOINT";
    ASSERT_TRUE(image_.entrypoint->is_array())
        << "ENTRYPOINT in shell form makes /bin/sh PID 1, and forkd never sees the SIGTERM";
    ASSERT_TRUE(!image_.cmd || image_.cmd->is_array()) << "CMD in shell form";
    resolve_config_path();
  }

  // The command the kubelet runs: the container's command (else the image's ENTRYPOINT) and
  // its args (else, without a command of its own, the image's CMD).
  [[nodiscard]] std::vector<std::string> container_argv() const {
    std::vector<std::string> argv =
        container_["command"] ? strings(container_["command"]) : strings(*image_.entrypoint);
    if (container_["args"]) {
      for (const auto& a : strings(container_["args"])) argv.push_back(a);
    } else if (!container_["command"] && image_.cmd) {
      for (const auto& a : strings(*image_.cmd)) argv.push_back(a);
    }
    return argv;
  }

  // -c's file in the container, the ConfigMap volume's mount path and the path inside it.
  void resolve_config_path() {
    const auto argv = container_argv();
    const auto c = std::find(argv.begin(), argv.end(), "-c");
    ASSERT_TRUE(c != argv.end() && c + 1 != argv.end()) << join(argv);
    config_path_ = *(c + 1);
    const auto config_map = manifests_["ConfigMap"]["metadata"]["name"].as<std::string>();
    std::string volume;
    for (const auto& v : pod_["volumes"]) {
      if (v["configMap"] && v["configMap"]["name"].as<std::string>() == config_map) {
        volume = v["name"].as<std::string>();
      }
    }
    ASSERT_FALSE(volume.empty()) << "no volume of ConfigMap " << config_map;
    for (const auto& m : container_["volumeMounts"]) {
      const auto path = m["mountPath"].as<std::string>();
      if (m["name"].as<std::string>() != volume || !config_path_.starts_with(path + "/")) continue;
      // A subPath mount is a copy the kubelet never updates: a reload would read the old file.
      EXPECT_FALSE(m["subPath"]) << "the ConfigMap is mounted with subPath";
      mount_path_ = path;
      inside_mount_ = config_path_.substr(path.size() + 1);
    }
    ASSERT_FALSE(mount_path_.empty()) << config_path_ << " is not in the ConfigMap's mount";
    key_ = fs::path(inside_mount_).filename().string();
    ASSERT_TRUE(manifests_["ConfigMap"]["data"][key_]) << "the ConfigMap has no key " << key_;
  }

  [[nodiscard]] std::string embedded_config() const {
    return manifests_.at("ConfigMap")["data"][key_].as<std::string>();
  }

  std::map<std::string, YAML::Node> manifests_;
  YAML::Node pod_;
  YAML::Node container_;
  Containerfile image_;
  std::string config_path_;   // /etc/forkd/..data/forkd.yaml
  std::string mount_path_;    // /etc/forkd
  std::string inside_mount_;  // ..data/forkd.yaml
  std::string key_;           // forkd.yaml
};

// The ConfigMap's directory as the kubelet mounts it (its atomic writer): the top directory
// world-writable (emptyDir's 0777), the files in a timestamped directory, "..data" a link to
// that directory, and every key a link through "..data". update() swaps "..data" atomically.
class ConfigMapMount {
 public:
  ConfigMapMount(const TempDir& dir, std::string key) : key_(std::move(key)) {
    root_ = dir.file("configmap");
    fs::create_directory(root_);
    fs::permissions(root_, fs::perms::all);
  }
  void update(const std::string& text) {
    const std::string version = "..2026_01_01_00_00_0" + std::to_string(++version_) + ".1";
    fs::create_directory(root_ / version);
    write(root_ / version / key_, text);
    fs::create_directory_symlink(version, root_ / "..data_tmp");
    fs::rename(root_ / "..data_tmp", root_ / "..data");
    if (!fs::is_symlink(root_ / key_)) fs::create_symlink(fs::path("..data") / key_, root_ / key_);
  }
  [[nodiscard]] const fs::path& root() const { return root_; }

 private:
  static void write(const fs::path& path, const std::string& text) {
    std::ofstream out(path);
    out << text;
  }
  fs::path root_;
  std::string key_;
  int version_ = 0;
};

TEST_F(DeployFilesTest, TheConfigMapsFileIsValidAndItsPortsAreTheProbesAndTheService) {
  TempDir dir;
  const auto file = dir.write_file("forkd.yaml", embedded_config());
  const auto check = run_command({forkd_bin(), "--check-config", "-c", file}, 30s);
  ASSERT_EQ(check.exit_code(), 0) << check.err;
  EXPECT_EQ(check.out, "ok\n");

  const auto config = effective_config(file);
  ASSERT_TRUE(config.IsMap());
  const Endpoint serving = parse_endpoint(listen_address(config));
  const Endpoint metrics = parse_endpoint(config["metrics"]["listen"].as<std::string>());
  // Reachable from the kubelet and the Service, not only from inside the pod.
  EXPECT_EQ(serving.host, "0.0.0.0");
  EXPECT_EQ(metrics.host, "0.0.0.0");
  EXPECT_EQ(config["log"]["file"].as<std::string>(), "") << "kubectl logs reads stderr";
  EXPECT_EQ(YAML::Load(embedded_config())["workers"].as<std::string>(), "auto")
      << "one worker per CPU of the limit";

  std::set<std::uint16_t> declared;
  for (const auto& p : container_["ports"]) declared.insert(p["containerPort"].as<std::uint16_t>());
  EXPECT_TRUE(declared.contains(serving.port)) << "no containerPort " << serving.port;
  EXPECT_TRUE(declared.contains(metrics.port)) << "no containerPort " << metrics.port;

  const auto liveness = container_["livenessProbe"]["httpGet"];
  const auto readiness = container_["readinessProbe"]["httpGet"];
  ASSERT_TRUE(liveness && readiness) << "both probes are httpGet probes";
  EXPECT_EQ(liveness["path"].as<std::string>(), "/healthz");
  EXPECT_EQ(container_port(container_, liveness["port"]), metrics.port);
  EXPECT_EQ(readiness["path"].as<std::string>(), "/readyz");
  EXPECT_EQ(container_port(container_, readiness["port"]), metrics.port);

  const auto service = manifests_["Service"]["spec"];
  const auto labels = manifests_["Deployment"]["spec"]["template"]["metadata"]["labels"];
  EXPECT_TRUE(labels_match(service["selector"], labels)) << service["selector"];
  EXPECT_TRUE(labels_match(manifests_["Deployment"]["spec"]["selector"]["matchLabels"], labels));
  std::set<std::uint16_t> targets;
  for (const auto& p : service["ports"]) {
    targets.insert(container_port(container_, p["targetPort"] ? p["targetPort"] : p["port"]));
  }
  EXPECT_TRUE(targets.contains(serving.port)) << "the Service does not reach " << serving.port;

  // The limits workers: auto and max_memory: auto follow.
  EXPECT_TRUE(container_["resources"]["limits"]["cpu"]) << "no CPU limit";
  EXPECT_TRUE(container_["resources"]["limits"]["memory"]) << "no memory limit";
}

TEST_F(DeployFilesTest, TheStopFitsInTheGracePeriodAndTheReadinessProbeSeesItInTime) {
  TempDir dir;
  const auto config = effective_config(dir.write_file("forkd.yaml", embedded_config()));
  ASSERT_TRUE(config.IsMap());
  const auto delay = duration(config["stop"]["delay"]);
  const auto drain = duration(config["worker"]["shutdown_timeout"]);
  const auto grace = pod_["terminationGracePeriodSeconds"]
                         ? std::chrono::seconds{pod_["terminationGracePeriodSeconds"].as<int>()}
                         : kDefaultGracePeriod;
  EXPECT_GT(delay, 0ms) << "without stop.delay, requests routed before the endpoint update "
                           "reaches every node are refused";
  EXPECT_LE(delay + drain + kGraceMargin, grace)
      << "stop.delay " << delay.count() << "ms + worker.shutdown_timeout " << drain.count()
      << "ms + " << kGraceMargin.count() << "s must fit in terminationGracePeriodSeconds "
      << grace.count() << "s";
  // /readyz answers 503 from the SIGTERM on: the probe must notice before the drain starts.
  const auto probe = container_["readinessProbe"];
  const std::chrono::seconds period{probe["periodSeconds"] ? probe["periodSeconds"].as<int>() : 10};
  const int failures = probe["failureThreshold"] ? probe["failureThreshold"].as<int>() : 3;
  EXPECT_LE(period * failures, delay) << "the readiness probe needs longer than stop.delay";
}

TEST_F(DeployFilesTest, TheContainerRunsTheImagesEntrypointOnTheConfigMapsFile) {
  EXPECT_EQ(image_.from, "debian:12-slim");
  ASSERT_EQ(image_.copy.size(), 1U);
  EXPECT_TRUE(image_.copy[0].starts_with("forkd_*.deb ")) << image_.copy[0];
  ASSERT_FALSE(image_.run.empty());
  EXPECT_NE(image_.run[0].find("apt-get install -y"), std::string::npos) << image_.run[0];
  EXPECT_NE(image_.run[0].find("forkd_*.deb"), std::string::npos) << image_.run[0];
  EXPECT_EQ(image_.stop_signal, "SIGTERM");

  TempDir dir;
  const auto config = effective_config(dir.write_file("forkd.yaml", embedded_config()));
  ASSERT_TRUE(config.IsMap());
  for (const auto& address :
       {listen_address(config), config["metrics"]["listen"].as<std::string>()}) {
    EXPECT_TRUE(image_.exposed.contains(parse_endpoint(address).port))
        << "the Containerfile does not EXPOSE " << address;
  }

  // The package puts forkd and forkctl in /usr/bin (PackageTest), on the image's PATH.
  const auto entrypoint = strings(*image_.entrypoint);
  ASSERT_FALSE(entrypoint.empty());
  EXPECT_TRUE(entrypoint[0] == "forkd" || entrypoint[0] == "/usr/bin/forkd") << entrypoint[0];
  // The image's CMD names the same file as the pod, where the image has it: the package's
  // /etc/forkd/forkd.yaml, which the ConfigMap's mount covers.
  ASSERT_TRUE(image_.cmd.has_value());
  std::vector<std::string> expected = entrypoint;
  for (const auto& arg : strings(*image_.cmd)) {
    expected.push_back(arg == mount_path_ + "/" + key_ ? config_path_ : arg);
  }
  EXPECT_EQ(join(container_argv()), join(expected));
  // Named through "..data": the key's own link sits in the mount's world-writable top
  // directory, where forkd does not follow links (see the next test).
  EXPECT_EQ(inside_mount_, "..data/" + key_);
}

TEST_F(DeployFilesTest, ForkdRefusesTheKeysOwnLinkInTheMountAndReadsTheFileThroughData) {
  TempDir dir;
  ConfigMapMount mount(dir, key_);
  mount.update(embedded_config());
  const auto through_key =
      run_command({forkd_bin(), "--check-config", "-c", (mount.root() / key_).string()}, 30s);
  EXPECT_EQ(through_key.exit_code(), 78) << through_key.out << through_key.err;
  EXPECT_NE(through_key.err.find("writable by everyone"), std::string::npos) << through_key.err;
  const auto through_data = run_command(
      {forkd_bin(), "--check-config", "-c", (mount.root() / inside_mount_).string()}, 30s);
  EXPECT_EQ(through_data.exit_code(), 0) << through_data.err;
  EXPECT_EQ(through_data.out, "ok\n");
}

// The container's command for real, as PID 1 of a PID namespace (what a container runtime
// gives it), with the ConfigMap's file where -c names it; reloaded after the ConfigMap changes,
// then stopped by SIGTERM to PID 1 as the kubelet stops a container.
TEST_F(DeployFilesTest, TheContainerCommandRunsAsPid1ReloadsAndStopsOnSigterm) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (unshare --pid --mount-proc)";
  const auto unshare = find_tool("unshare");
  if (!unshare) GTEST_SKIP() << "unshare is not installed (Debian package util-linux)";

  TempDir dir;
  const std::uint16_t port = free_tcp_port();
  const std::uint16_t metrics_port = free_tcp_port();
  const std::string socket = dir.file("forkd.sock");
  // Only the addresses and the control socket's path change: stop.delay, shutdown_timeout,
  // workers and the rest are the ConfigMap's.
  YAML::Node config = YAML::Load(embedded_config());
  ASSERT_TRUE(config["listen"].IsSequence() && config["listen"].size() == 1U);
  ASSERT_TRUE(config["metrics"]["listen"] && config["control"]["socket"]);
  config["listen"][0] = "127.0.0.1:" + std::to_string(port);
  config["metrics"]["listen"] = "127.0.0.1:" + std::to_string(metrics_port);
  config["control"]["socket"] = socket;
  const auto text = [](const YAML::Node& node) {
    YAML::Emitter out;
    out << node;
    return std::string(out.c_str()) + "\n";
  };
  ConfigMapMount mount(dir, key_);
  mount.update(text(config));

  // The container's argv, its binary this build's and its paths in the mount's stand-in.
  std::vector<std::string> args{"--pid", "--fork", "--mount-proc", "--kill-child"};
  // allowPrivilegeEscalation: false is no_new_privs for the container's processes.
  const auto security = container_["securityContext"];
  if (security && security["allowPrivilegeEscalation"] &&
      !security["allowPrivilegeEscalation"].as<bool>()) {
    const auto setpriv = find_tool("setpriv");
    ASSERT_TRUE(setpriv) << "setpriv is not installed (Debian package util-linux)";
    args.insert(args.end(), {*setpriv, "--no-new-privs"});
  }
  auto argv = container_argv();
  argv[0] = forkd_bin();
  for (auto& arg : argv) {
    if (arg.starts_with(mount_path_ + "/")) {
      arg = mount.root().string() + arg.substr(mount_path_.size());
    }
  }
  args.insert(args.end(), argv.begin(), argv.end());
  ForkdProcess pod;
  ForkdOptions options;
  options.binary = *unshare;
  options.use_config_flag = false;
  options.extra_args = args;
  pod.start(dir, options);

  ASSERT_TRUE(pod.wait_for_log(R"(forkd \S+ started \(pid 1\))", 30s)) << pod.log();
  const auto status = [&] {
    const auto r = run_command({forkctl_bin(), "-s", socket, "--json", "status"}, 30s);
    EXPECT_EQ(r.exit_code(), 0) << r.err;
    return r.exit_code() == 0 ? json::parse(r.out) : json::object();
  };
  // Every worker `auto` asked for is ready.
  json before;
  ASSERT_TRUE(wait_until(
      [&] {
        before = status();
        return before.contains("master") && before["master"]["workers_target"].get<int>() > 0 &&
               before["master"]["workers_ready"] == before["master"]["workers_target"];
      },
      60s))
      << before.dump() << pod.log();
  EXPECT_EQ(before["master"]["pid"], 1) << before.dump();
  EXPECT_EQ(before["workers"].size(), before["master"]["workers_target"].get<std::size_t>())
      << before.dump();

  const auto answer = [](std::uint16_t p, const std::string& path) {
    const auto r = http_get("127.0.0.1", p, path, 5s);
    return r ? r->status : 0;
  };
  EXPECT_EQ(answer(metrics_port, "/healthz"), 200);
  EXPECT_EQ(answer(metrics_port, "/readyz"), 200);
  EXPECT_EQ(answer(port, "/"), 200);

  // The ConfigMap changes (one worker instead of `auto`), then `forkctl reload`.
  config["workers"] = 1;
  mount.update(text(config));
  const auto reload = run_command({forkctl_bin(), "-s", socket, "reload"}, 60s);
  EXPECT_EQ(reload.exit_code(), 0) << reload.out << reload.err << pod.log();
  json after = status();
  EXPECT_EQ(after["master"]["generation"], 2) << after.dump();
  ASSERT_TRUE(wait_until(
      [&] {
        after = status();
        return after["workers"].size() == 1U;
      },
      60s))
      << pod.log();

  // PID 1's pid out here: unshare --fork's only child.
  const auto children = child_pids(pod.pid());
  ASSERT_EQ(children.size(), 1U);
  const pid_t pid1 = children[0];
  pod.track(pid1);
  std::vector<std::pair<pid_t, unsigned long long>> tree;
  for (const pid_t p : descendant_pids(pod.pid())) {
    if (const auto start = process_start_time(p)) tree.emplace_back(p, *start);
  }
  ASSERT_GE(tree.size(), 2U) << "the master and its worker";

  const auto sigterm_at = pod.log().size();
  ASSERT_EQ(::kill(pid1, SIGTERM), 0);
  ASSERT_TRUE(wait_until([&] { return answer(metrics_port, "/readyz") == 503; }, 10s)) << pod.log();
  EXPECT_EQ(answer(port, "/"), 200) << "refused during stop.delay";
  EXPECT_EQ(answer(metrics_port, "/healthz"), 200);
  EXPECT_EQ(pod.count_log("graceful stop", sigterm_at), 0U) << "the drain began before stop.delay";

  const auto exited = pod.wait_exit(60s);
  ASSERT_TRUE(exited) << pod.log();
  EXPECT_TRUE(WIFEXITED(*exited) && WEXITSTATUS(*exited) == 0) << describe_status(*exited);
  const auto delay = pod.wait_for_log("stop requested: /readyz answers 503", 1ms, sigterm_at);
  ASSERT_TRUE(delay) << pod.log();
  const auto drain = pod.wait_for_log("graceful stop", 1ms, delay->end_offset);
  ASSERT_TRUE(drain) << pod.log();
  EXPECT_TRUE(pod.wait_for_log(R"(stopped \(exit code 0\))", 1ms, drain->end_offset)) << pod.log();
  // forkd reaped its worker itself before it exited (the kernel would have killed it with the
  // namespace otherwise), and nothing of the tree is left, not even a zombie.
  for (const auto& worker : after["workers"]) {
    if (!worker["pid"].is_number()) continue;
    EXPECT_EQ(pod.count_log("worker [0-9]+ \\(pid " + std::to_string(worker["pid"].get<int>()) +
                                "\\) stopped",
                            drain->end_offset),
              1U)
        << pod.log();
  }
  for (const auto& [p, start] : tree) {
    EXPECT_NE(process_start_time(p), start) << "pid " << p << " is still there";
  }
}

}  // namespace
