// A batch of B search trees in flat arrays: per node (visits, value sum, network value, and the
// reward and discount of the edge into it) and per edge (child id, the child's visits and Q, the
// prior probability and logit). Each node is one record of whole cache lines holding its own
// statistics and its A edges, so choosing an action at a node reads a few adjacent lines; tree b
// owns records [b * capacity, (b + 1) * capacity), so trees can be worked on by different threads.
//
// Statistics follow mctx's conventions: a node's expansion counts as its first visit with the
// network value as its first sample, so value = value_sum / visits and a fresh root has visits 1.
// Edge statistics are kept at the parent (copies of the child's visits and Q) so that choosing
// an action reads A contiguous entries instead of chasing A child pointers.
//
// A stochastic tree (Stochastic MuZero, chance.h) has two kinds of node that alternate along every
// path: decision nodes, whose edges are actions, and chance nodes (afterstates), whose edges are
// chance outcomes. Its nodes have as many edges as the wider kind needs; roots are decision nodes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "pymbrl/large_array.h"
#include "pymbrl/mcts/softmax.h"

namespace pymbrl::mcts {

constexpr int32_t kNoNode = -1;

// Caller rows of float32 or float64 (network outputs), read as double.
struct FloatRows {
  const float* f32 = nullptr;
  const double* f64 = nullptr;
  double operator[](size_t i) const { return f32 != nullptr ? static_cast<double>(f32[i]) : f64[i]; }
  // Calls f with the typed pointer, for loops that should not test the type per element.
  template <typename F>
  decltype(auto) visit(F&& f) const {
    return f32 != nullptr ? f(f32) : f(f64);
  }
};

// Limits of a TreeBatch, checked before anything is allocated. Node ids and visit counts are
// int32, so a tree holds at most kMaxCapacity nodes; the node records of all trees together may
// not exceed kMaxTreeBytes (1 TiB, allocated lazily), which also keeps every offset computed from
// them in range. The per-root state (a few hundred bytes, written at construction) is bounded by
// kMaxBatchSize.
constexpr int64_t kMaxBatchSize = int64_t{1} << 24;
constexpr int64_t kMaxActions = int64_t{1} << 24;
constexpr int64_t kMaxCapacity = int64_t{1} << 30;
constexpr uint64_t kMaxTreeBytes = uint64_t{1} << 40;

class TreeBatch {
 public:
  // Bytes of one node's record for `num_actions` actions (whole cache lines); num_actions must be
  // in [1, kMaxActions], where this cannot overflow.
  static size_t record_bytes(int64_t num_actions) {
    const size_t a = static_cast<size_t>(num_actions);
    const size_t visits_at = sizeof(Header) + 4 * a;
    const size_t q_at = (visits_at + 4 * a + 7) / 8 * 8;
    return (q_at + 4 * 8 * a + 63) / 64 * 64;
  }

  // Throws std::invalid_argument naming the argument unless a batch of this shape is within the
  // limits above; the product of the three is computed with overflow checks.
  static void check_shape(int64_t batch_size, int64_t num_actions, int64_t capacity) {
    auto in_range = [](int64_t v, int64_t most, const char* name) {
      if (v < 1 || v > most) {
        throw std::invalid_argument(std::string(name) + ": expected an integer in [1, " + std::to_string(most) +
                                    "], got " + std::to_string(v));
      }
    };
    in_range(batch_size, kMaxBatchSize, "batch_size");
    in_range(num_actions, kMaxActions, "num_actions");
    in_range(capacity, kMaxCapacity, "capacity");
    uint64_t nodes = 0, bytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(batch_size), static_cast<uint64_t>(capacity), &nodes) ||
        __builtin_mul_overflow(nodes, static_cast<uint64_t>(record_bytes(num_actions)), &bytes) ||
        bytes > kMaxTreeBytes) {
      throw std::invalid_argument("capacity: expected batch_size x capacity x " +
                                  std::to_string(record_bytes(num_actions)) + " bytes (a node of " +
                                  std::to_string(num_actions) + " actions) <= 2**40 bytes, got batch_size " +
                                  std::to_string(batch_size) + " and capacity " + std::to_string(capacity));
    }
  }

  // num_actions: edges per node. alternating: a stochastic tree, whose nodes alternate between
  // decision and chance nodes (a root's children are chance nodes, theirs decision nodes, ...).
  TreeBatch(int batch_size, int num_actions, int capacity, bool alternating = false)
      : batch_((check_shape(batch_size, num_actions, capacity), batch_size)),
        alternating_(alternating),
        actions_(num_actions),
        capacity_(capacity),
        children_at_(sizeof(Header)),
        visits_at_(children_at_ + 4 * static_cast<size_t>(num_actions)),
        q_at_((visits_at_ + 4 * static_cast<size_t>(num_actions) + 7) / 8 * 8),
        explore_at_(q_at_ + 8 * static_cast<size_t>(num_actions)),
        prior_at_(explore_at_ + 8 * static_cast<size_t>(num_actions)),
        logit_at_(prior_at_ + 8 * static_cast<size_t>(num_actions)),
        stride_(record_bytes(num_actions)),
        num_nodes_(static_cast<size_t>(batch_size)),
        root_valid_(static_cast<size_t>(batch_size) * num_actions),
        records_(static_cast<size_t>(batch_size) * capacity * stride_) {
    std::fill(num_nodes_.data(), num_nodes_.data() + batch_, 0);
    std::fill(root_valid_.data(), root_valid_.data() + root_valid_.size(), uint8_t{1});
  }

  int batch_size() const { return batch_; }
  int num_actions() const { return actions_; }
  int capacity() const { return capacity_; }
  int32_t num_nodes(int b) const { return num_nodes_[b]; }

  int32_t visits(int b, int32_t x) const { return header(b, x).visits; }
  double value_sum(int b, int32_t x) const { return header(b, x).value_sum; }
  double value(int b, int32_t x) const { return header(b, x).value_sum / header(b, x).visits; }
  double raw_value(int b, int32_t x) const { return header(b, x).raw_value; }
  double reward(int b, int32_t x) const { return header(b, x).reward; }
  double discount(int b, int32_t x) const { return header(b, x).discount; }
  int32_t parent(int b, int32_t x) const { return header(b, x).parent; }
  int32_t action_from_parent(int b, int32_t x) const { return header(b, x).action; }
  // Whether node x is a chance node (only in an alternating tree).
  bool is_chance(int b, int32_t x) const { return header(b, x).chance != 0; }

  // The A edges of node x, contiguous within the node's record.
  const int32_t* children(int b, int32_t x) const { return field<int32_t>(b, x, children_at_); }
  const int32_t* child_visits(int b, int32_t x) const { return field<int32_t>(b, x, visits_at_); }
  const double* child_q(int b, int32_t x) const { return field<double>(b, x, q_at_); }
  const double* priors(int b, int32_t x) const { return field<double>(b, x, prior_at_); }
  // P(a) / (1 + N(a)), pUCT's exploration term up to the node's factor, kept current on backup so
  // that a selection step multiplies instead of dividing.
  const double* explore(int b, int32_t x) const { return field<double>(b, x, explore_at_); }
  double* priors(int b, int32_t x) { return field<double>(b, x, prior_at_); }
  const double* logits(int b, int32_t x) const { return field<double>(b, x, logit_at_); }

  // Starts loading node x's record into the cache. A selection step knows the next node one
  // action-choice ahead; issuing all of its lines at once overlaps their misses instead of paying
  // them one after another as the choice reads its arrays (deep nodes of big batches are in DRAM).
  // pUCT reads only the statistics up to explore(); Gumbel and expansion use the whole record.
  void prefetch(int b, int32_t x, bool whole, bool for_write = false) const {
    const unsigned char* r = record(b, x);
    const size_t end = whole ? stride_ : prior_at_;
    for (size_t off = 0; off < end; off += 64) {
      if (for_write) {
        __builtin_prefetch(r + off, 1);
      } else {
        __builtin_prefetch(r + off, 0);
      }
    }
  }

  // Which actions the root of tree b may take (1) or not (0); interior nodes allow every action.
  const uint8_t* root_valid(int b) const { return root_valid_.data() + static_cast<size_t>(b) * actions_; }

  // Root probabilities from the root's logits, over its valid actions only.
  void reset_root_priors(int b) {
    const double* l = logits(b, 0);
    const uint8_t* valid = root_valid(b);
    softmax(actions_, [l](int a) { return l[a]; }, [valid](int a) { return valid[a] != 0; }, priors(b, 0));
    refresh_explore(b, 0);
  }

  // Recomputes explore() of node x after its priors changed (root noise, new valid actions).
  void refresh_explore(int b, int32_t x) {
    const int32_t* n = child_visits(b, x);
    const double* p = priors(b, x);
    double* e = field<double>(b, x, explore_at_);
    for (int a = 0; a < actions_; ++a) e[a] = p[a] / (n[a] + 1.0);
  }

  // Makes tree b a single fresh root. `invalid` (A entries, or null) marks actions the root may
  // not take. Arguments are assumed checked by the caller.
  void set_root(int b, const FloatRows& logits, size_t logits_offset, double value, const uint8_t* invalid) {
    num_nodes_[b] = 0;
    set_valid(b, invalid);
    init_node(b, kNoNode, -1, 0.0, 1.0, logits, logits_offset, value);
    reset_root_priors(b);
  }

  // Marks the root's valid actions anew for a kept tree, dropping the statistics that went
  // through actions that became invalid (they are subtracted from the root; their nodes become
  // unreachable and are compacted away by the next reroot).
  void revalidate_root(int b, const uint8_t* invalid) {
    set_valid(b, invalid);
    Header& root = header(b, 0);
    int32_t* children = field<int32_t>(b, 0, children_at_);
    int32_t* n = field<int32_t>(b, 0, visits_at_);
    double* q = field<double>(b, 0, q_at_);
    const uint8_t* valid = root_valid(b);
    for (int a = 0; a < actions_; ++a) {
      if (valid[a] || children[a] == kNoNode) continue;
      const Header& child = header(b, children[a]);
      root.visits -= child.visits;
      root.value_sum -= child.visits * child.reward + child.discount * child.value_sum;
      children[a] = kNoNode;
      n[a] = 0;
      q[a] = 0.0;
    }
    reset_root_priors(b);
  }

  // Adds a new node to tree b, reached from node x by action a, and returns its id.
  int32_t add_child(int b, int32_t x, int a, double reward, double discount, const FloatRows& logits,
                    size_t logits_offset, double value) {
    const int32_t c = init_node(b, x, a, reward, discount, logits, logits_offset, value);
    field<int32_t>(b, x, children_at_)[a] = c;
    return c;
  }

  // Visits an existing leaf again without re-evaluating it (the search's depth limit): its mean
  // is its value estimate. Returns the value to back up.
  double revisit(int b, int32_t x) {
    Header& h = header(b, x);
    const double g = h.value_sum / h.visits;
    h.visits += 1;
    h.value_sum += g;
    return g;
  }

  // Backs the leaf's value g up to the root: every ancestor's visits and value sum grow by one
  // return, discounted and rewarded along the path. on_edge(q) sees the Q of each edge on the path
  // (leaf first) right after it changed; the search's min-max statistics listen there.
  template <typename OnEdge>
  void backup(int b, int32_t leaf, double g, OnEdge&& on_edge) {
    int32_t y = leaf;
    while (y != 0) {
      const Header& hy = header(b, y);
      const int32_t p = hy.parent;
      const double q = hy.reward + hy.discount * (hy.value_sum / hy.visits);
      field<int32_t>(b, p, visits_at_)[hy.action] = hy.visits;
      field<double>(b, p, q_at_)[hy.action] = q;
      field<double>(b, p, explore_at_)[hy.action] = field<double>(b, p, prior_at_)[hy.action] / (hy.visits + 1.0);
      on_edge(q);
      g = hy.reward + hy.discount * g;
      Header& hp = header(b, p);
      hp.value_sum += g;
      hp.visits += 1;
      y = p;
    }
  }

  // Makes the child of tree b's root reached by `action` the new root, compacting its subtree to
  // the front: old_id_of(k, old) is called for every kept node with its new id k (in increasing
  // order, new ids never exceed old ones, which is what allows compacting in place). Returns the
  // number of kept nodes; 0 when that child was never expanded (the tree then needs a new root).
  template <typename Report>
  int32_t reroot(int b, int action, Report&& old_id_of) {
    return reroot_at(b, children(b, 0)[action], old_id_of);
  }

  // reroot at any node `start` of tree b (kNoNode: the tree empties). Stochastic trees move two
  // levels down, to a decision node.
  template <typename Report>
  int32_t reroot_at(int b, int32_t start, Report&& old_id_of) {
    if (start == kNoNode) {
      num_nodes_[b] = 0;
      return 0;
    }
    // A node is in the subtree iff its parent is; parents have smaller ids than their children,
    // so one pass in id order decides membership and assigns the new ids.
    const int32_t count = num_nodes_[b];
    int32_t* new_id = scratch_ids(count);
    int32_t kept = 0;
    for (int32_t x = 0; x < count; ++x) {
      const int32_t p = header(b, x).parent;
      const bool in = x == start || (x > start && p >= start && new_id[p] != kNoNode);
      new_id[x] = in ? kept++ : kNoNode;
    }
    for (int32_t x = start; x < count; ++x) {
      const int32_t k = new_id[x];
      if (k == kNoNode) continue;
      old_id_of(k, x);
      unsigned char* to = record(b, k);
      if (k != x) std::memcpy(to, record(b, x), stride_);
      Header& h = *reinterpret_cast<Header*>(to);
      h.parent = k == 0 ? kNoNode : new_id[h.parent];
      if (k == 0) {
        h.action = -1;
        h.reward = 0.0;
        h.discount = 1.0;
      }
      int32_t* c = reinterpret_cast<int32_t*>(to + children_at_);
      for (int a = 0; a < actions_; ++a) c[a] = c[a] == kNoNode ? kNoNode : new_id[c[a]];
    }
    num_nodes_[b] = kept;
    return kept;
  }

 private:
  // The fixed part of a node's record; the A-entry edge arrays follow it.
  struct Header {
    int32_t visits;
    int32_t parent;
    int32_t action;  // the action from the parent
    int32_t chance;  // 1 for a chance node, 0 for a decision node
    double value_sum;
    double raw_value;
    double reward;    // of the edge into this node
    double discount;  // of the edge into this node
  };

  unsigned char* record(int b, int32_t x) {
    return records_.data() + (static_cast<size_t>(b) * capacity_ + static_cast<size_t>(x)) * stride_;
  }
  const unsigned char* record(int b, int32_t x) const {
    return records_.data() + (static_cast<size_t>(b) * capacity_ + static_cast<size_t>(x)) * stride_;
  }
  Header& header(int b, int32_t x) { return *reinterpret_cast<Header*>(record(b, x)); }
  const Header& header(int b, int32_t x) const { return *reinterpret_cast<const Header*>(record(b, x)); }
  template <typename T>
  T* field(int b, int32_t x, size_t offset) {
    return reinterpret_cast<T*>(record(b, x) + offset);
  }
  template <typename T>
  const T* field(int b, int32_t x, size_t offset) const {
    return reinterpret_cast<const T*>(record(b, x) + offset);
  }

  void set_valid(int b, const uint8_t* invalid) {
    uint8_t* valid = root_valid_.data() + static_cast<size_t>(b) * actions_;
    for (int a = 0; a < actions_; ++a) valid[a] = invalid == nullptr || invalid[a] == 0;
  }

  int32_t init_node(int b, int32_t parent, int action, double reward, double discount, const FloatRows& logits,
                    size_t logits_offset, double value) {
    const int32_t chance = alternating_ && parent != kNoNode ? 1 - header(b, parent).chance : 0;
    const int32_t x = num_nodes_[b]++;
    Header& h = header(b, x);
    h = Header{1, parent, action, chance, value, value, reward, discount};
    int32_t* children = field<int32_t>(b, x, children_at_);
    int32_t* n = field<int32_t>(b, x, visits_at_);
    double* q = field<double>(b, x, q_at_);
    double* l = field<double>(b, x, logit_at_);
    for (int a = 0; a < actions_; ++a) {
      children[a] = kNoNode;
      n[a] = 0;
      q[a] = 0.0;
    }
    logits.visit([&](const auto* row) {
      for (int a = 0; a < actions_; ++a) l[a] = row[logits_offset + a];
    });
    double* p = field<double>(b, x, prior_at_);
    softmax(actions_, [l](int a) { return l[a]; }, [](int) { return true; }, p);
    std::memcpy(field<double>(b, x, explore_at_), p, sizeof(double) * actions_);  // no visits yet
    return x;
  }

  // Per-thread scratch for reroot's id map (trees of a batch are rerooted in parallel).
  static int32_t* scratch_ids(int32_t count) {
    thread_local std::vector<int32_t> ids;
    if (ids.size() < static_cast<size_t>(count)) ids.resize(count);
    return ids.data();
  }

  int batch_;
  bool alternating_;
  int actions_, capacity_;
  // Byte offsets of the edge arrays within a node record, and the record size (whole cache lines).
  size_t children_at_, visits_at_, q_at_, explore_at_, prior_at_, logit_at_, stride_;
  LargeArray<int32_t> num_nodes_;
  LargeArray<uint8_t> root_valid_;
  LargeArray<unsigned char> records_;
};

}  // namespace pymbrl::mcts
