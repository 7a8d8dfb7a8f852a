#include "common/ipc_protocol.hpp"

#include <gtest/gtest.h>

namespace {

namespace ipc = forkd::common::ipc;
using nlohmann::json;

TEST(IpcProtocol, DaemonMessagesDecodeToTheirKinds) {
  EXPECT_TRUE(std::holds_alternative<ipc::Ready>(ipc::decode(json{{"forkd", "ready"}})));
  EXPECT_TRUE(std::holds_alternative<ipc::Ready>(ipc::decode(json("ready"))));
  EXPECT_TRUE(std::holds_alternative<ipc::Heartbeat>(ipc::decode(json{{"forkd", "heartbeat"}})));
  const auto send = ipc::decode(json{{"forkd", "send"}, {"to", 2}, {"data", {1, 2}}});
  ASSERT_TRUE(std::holds_alternative<ipc::Send>(send));
  EXPECT_EQ(std::get<ipc::Send>(send).to, 2U);
  EXPECT_EQ(std::get<ipc::Send>(send).data, json({1, 2}));
  const auto all = ipc::decode(json{{"forkd", "broadcast"}, {"data", "x"}});
  ASSERT_TRUE(std::holds_alternative<ipc::Broadcast>(all));
  EXPECT_EQ(std::get<ipc::Broadcast>(all).data, "x");
  const auto unknown = ipc::decode(json{{"forkd", "reboot"}});
  ASSERT_TRUE(std::holds_alternative<ipc::Unknown>(unknown));
  EXPECT_EQ(std::get<ipc::Unknown>(unknown).kind, "reboot");
}

TEST(IpcProtocol, EverythingElseIsTheApplicationsUntouched) {
  for (const json& value : {json(1), json("hello"), json::array({1, "x"}), json{{"forkd", 7}},
                            json{{"type", "ready"}}, json(nullptr)}) {
    const auto m = ipc::decode(value);
    ASSERT_TRUE(std::holds_alternative<ipc::Application>(m)) << value.dump();
    EXPECT_EQ(std::get<ipc::Application>(m).value, value);
  }
}

TEST(IpcProtocol, SendToSomethingThatIsNotAWorkerIdFailsClosed) {
  for (const json& to : {json(-1), json(4096), json(1.5), json("1"), json::array({1}), json()}) {
    const auto m = ipc::decode(json{{"forkd", "send"}, {"to", to}, {"data", 1}});
    ASSERT_TRUE(std::holds_alternative<ipc::Send>(m)) << to.dump();
    EXPECT_FALSE(std::get<ipc::Send>(m).to.has_value()) << to.dump();
  }
  json deep = 1;
  for (int i = 0; i < 100; ++i) deep = json::array({deep});
  const auto m = ipc::decode(json{{"forkd", "send"}, {"to", deep}});
  EXPECT_EQ(std::get<ipc::Send>(m).to_shown, "an array");
}

TEST(IpcProtocol, EncodeIsTheInverseForDaemonMessages) {
  const ipc::Message sent = ipc::Send{3, "", json{{"k", "v"}}};
  const auto back = ipc::decode(ipc::encode(sent));
  ASSERT_TRUE(std::holds_alternative<ipc::Send>(back));
  EXPECT_EQ(std::get<ipc::Send>(back).to, 3U);
  EXPECT_EQ(std::get<ipc::Send>(back).data, json({{"k", "v"}}));
  EXPECT_EQ(ipc::encode(ipc::Ready{}), json({{"forkd", "ready"}}));
  EXPECT_EQ(ipc::encode(ipc::Heartbeat{}), json({{"forkd", "heartbeat"}}));
  const auto counts = ipc::decode(ipc::encode(ipc::Connections{12, 3}));
  ASSERT_TRUE(std::holds_alternative<ipc::Connections>(counts));
  EXPECT_EQ(std::get<ipc::Connections>(counts).accepted, 12U);
  EXPECT_EQ(std::get<ipc::Connections>(counts).open, 3U);
}

TEST(IpcProtocol, ConnectionCountsThatAreNotCountsAreLeftOut) {
  for (const json& bad : {json(-1), json(1.5), json("7"), json::array({1}), json()}) {
    const auto m = ipc::decode(json{{"forkd", "connections"}, {"accepted", bad}, {"open", 2}});
    ASSERT_TRUE(std::holds_alternative<ipc::Connections>(m)) << bad.dump();
    EXPECT_FALSE(std::get<ipc::Connections>(m).accepted.has_value()) << bad.dump();
    EXPECT_EQ(std::get<ipc::Connections>(m).open, 2U);
  }
  const auto m = ipc::decode(json{{"forkd", "connections"}});
  EXPECT_FALSE(std::get<ipc::Connections>(m).accepted.has_value());
  EXPECT_FALSE(std::get<ipc::Connections>(m).open.has_value());
  EXPECT_EQ(
      std::get<ipc::Connections>(
          ipc::decode(json::parse(R"({"forkd":"connections","accepted":18446744073709551615})")))
          .accepted,
      18446744073709551615U);
}

}  // namespace
