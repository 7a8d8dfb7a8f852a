#include "common/worker_identity.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace {

using forkd::common::lookup_group;
using forkd::common::lookup_user;
using forkd::common::ProcessIdentity;
using forkd::common::resolve_worker_ids;

constexpr ProcessIdentity kRoot{0, 0};

bool contains(const std::vector<gid_t>& list, gid_t gid) {
  return std::find(list.begin(), list.end(), gid) != list.end();
}

TEST(WorkerIdentity, LookupsTellMissingFromFound) {
  std::string error;
  const auto root = lookup_user("root", error);
  ASSERT_TRUE(root);
  EXPECT_EQ(root->uid, 0U);
  EXPECT_EQ(error, "");
  EXPECT_FALSE(lookup_user("no-such-user-forkd", error));
  EXPECT_EQ(error, "");
  EXPECT_EQ(lookup_group("root", error), gid_t{0});
  EXPECT_FALSE(lookup_group("no-such-group-forkd", error));
  EXPECT_EQ(error, "");
}

TEST(WorkerIdentity, NothingAskedChangesNothing) {
  const auto ids = resolve_worker_ids("", "", kRoot);
  EXPECT_FALSE(ids.uid);
  EXPECT_FALSE(ids.gid);
  EXPECT_TRUE(ids.groups.empty());
  EXPECT_EQ(ids.user_error, "");
  EXPECT_EQ(ids.group_error, "");
}

TEST(WorkerIdentity, RootMasterGetsTheUsersIdsAndGroups) {
  const auto ids = resolve_worker_ids("root", "", kRoot);
  EXPECT_EQ(ids.user_error, "");
  EXPECT_EQ(ids.uid, uid_t{0});
  EXPECT_EQ(ids.gid, gid_t{0});
  EXPECT_TRUE(contains(ids.groups, 0));

  std::string error;
  const auto nobody = lookup_user("nobody", error);
  if (!nobody) GTEST_SKIP() << "no user nobody here";
  const auto dropped = resolve_worker_ids("nobody", "", kRoot);
  EXPECT_EQ(dropped.uid, nobody->uid);
  EXPECT_EQ(dropped.gid, nobody->gid);
  EXPECT_TRUE(contains(dropped.groups, nobody->gid));
  // A group named too is the worker's gid, added to the user's groups.
  const auto with_group = resolve_worker_ids("nobody", "root", kRoot);
  EXPECT_EQ(with_group.uid, nobody->uid);
  EXPECT_EQ(with_group.gid, gid_t{0});
  EXPECT_TRUE(contains(with_group.groups, 0));
  EXPECT_TRUE(contains(with_group.groups, nobody->gid));
}

TEST(WorkerIdentity, GroupAloneSetsTheGidOnly) {
  const auto ids = resolve_worker_ids("", "root", kRoot);
  EXPECT_EQ(ids.group_error, "");
  EXPECT_FALSE(ids.uid);
  EXPECT_EQ(ids.gid, gid_t{0});
  EXPECT_TRUE(ids.groups.empty());
}

TEST(WorkerIdentity, UnknownNamesAreErrorsNeverTheMastersIds) {
  const auto ids = resolve_worker_ids("no-such-user-forkd", "no-such-group-forkd", kRoot);
  EXPECT_EQ(ids.user_error, "no such user \"no-such-user-forkd\"");
  EXPECT_EQ(ids.group_error, "no such group \"no-such-group-forkd\"");
  EXPECT_FALSE(ids.uid);
  EXPECT_FALSE(ids.gid);
}

TEST(WorkerIdentity, NonRootMasterCannotSwitchToAnotherUserOrGroup) {
  const ProcessIdentity master{1000, 1000};
  const auto ids = resolve_worker_ids("root", "root", master);
  EXPECT_EQ(ids.user_error,
            "forkd runs as uid 1000 and cannot switch to user \"root\" (uid 0); start it as root "
            "or remove worker.user");
  EXPECT_EQ(ids.group_error,
            "forkd runs as uid 1000 with gid 1000 and cannot switch to group \"root\" (gid 0); "
            "start it as root or remove worker.group");
  EXPECT_FALSE(ids.uid);
  EXPECT_FALSE(ids.gid);
}

TEST(WorkerIdentity, NonRootMasterNamingItselfHasNothingToDrop) {
  std::string error;
  const auto nobody = lookup_user("nobody", error);
  if (!nobody) GTEST_SKIP() << "no user nobody here";
  const ProcessIdentity master{nobody->uid, nobody->gid};
  const auto ids = resolve_worker_ids("nobody", "", master);
  EXPECT_EQ(ids.user_error, "");
  EXPECT_FALSE(ids.uid);  // setgroups() would fail without privilege: nothing is applied
  EXPECT_FALSE(ids.gid);
  EXPECT_TRUE(ids.groups.empty());
  // Its own gid by a group name is fine too.
  const ProcessIdentity in_root_group{nobody->uid, 0};
  const auto own_group = resolve_worker_ids("", "root", in_root_group);
  EXPECT_EQ(own_group.group_error, "");
  EXPECT_FALSE(own_group.gid);
}

}  // namespace
