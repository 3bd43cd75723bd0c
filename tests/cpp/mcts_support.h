// A driver that runs a Search against a deterministic toy model written in C++, standing in for
// the Python loop: each node carries an integer "embedding" (a hash of its path) and the model's
// outputs are a function of the parent's embedding and the action.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "pymbrl/mcts/search.h"
#include "pymbrl/rng.h"

namespace mcts_test {

using pymbrl::mcts::FloatRows;
using pymbrl::mcts::PoolRows;
using pymbrl::mcts::Search;
using pymbrl::mcts::Selection;

struct Step {
  float reward = 0.0f;
  float discount = 1.0f;
  float value = 0.0f;
  std::vector<float> logits;
};

// model(root b, parent embedding, action, A) -> outputs for the child.
using Model = std::function<Step(int, uint64_t, int, int)>;

inline uint64_t child_embedding(uint64_t parent, int action) {
  return pymbrl::derive_seed(parent, static_cast<uint64_t>(action) + 1);
}

// A hash-driven model: rewards in [-1, 1), discount 0.9, values in [-1, 1), logits in [-2, 2).
inline Step hash_model(int, uint64_t parent, int action, int A) {
  pymbrl::Rng rng(child_embedding(parent, action));
  Step s;
  s.reward = static_cast<float>(2.0 * rng.uniform() - 1.0);
  s.discount = 0.9f;
  s.value = static_cast<float>(2.0 * rng.uniform() - 1.0);
  for (int a = 0; a < A; ++a) s.logits.push_back(static_cast<float>(4.0 * rng.uniform() - 2.0));
  return s;
}

class Driver {
 public:
  Driver(Search& search, Model model)
      : search_(search),
        model_(std::move(model)),
        B_(search.tree().batch_size()),
        A_(search.tree().num_actions()),
        embedding_(static_cast<size_t>(B_) * (search.tree().capacity() + 1)),
        parent_(B_), action_(B_), node_(B_), is_new_(B_),
        reward_(B_), discount_(B_), value_(B_), logits_(static_cast<size_t>(B_) * A_) {
    for (int b = 0; b < B_; ++b) embedding_[row(0, b)] = 1000 + b;
  }

  // Root embeddings are 1000 + b; logits and values are given by the caller.
  void set_roots(const std::vector<float>& logits, const std::vector<float>& values,
                 const std::vector<uint8_t>* invalid = nullptr) {
    search_.set_roots(FloatRows{logits.data(), nullptr}, FloatRows{values.data(), nullptr},
                      invalid ? invalid->data() : nullptr, nullptr);
    for (int b = 0; b < B_; ++b) embedding_[row(0, b)] = 1000 + b;
  }

  void select() {
    search_.select(Selection{parent_.data(), action_.data(), node_.data(), is_new_.data()}, PoolRows{});
  }

  // Fills the model's outputs for the current selection.
  void evaluate() {
    for (int b = 0; b < B_; ++b) {
      const uint64_t e = embedding_[row(parent_[b], b)];
      const Step s = model_(b, e, action_[b], A_);
      reward_[b] = s.reward;
      discount_[b] = s.discount;
      value_[b] = s.value;
      for (int a = 0; a < A_; ++a) logits_[static_cast<size_t>(b) * A_ + a] = s.logits[a];
      if (is_new_[b]) embedding_[row(node_[b], b)] = child_embedding(e, action_[b]);
    }
  }

  void expand() {
    search_.expand_and_backup(FloatRows{reward_.data(), nullptr}, FloatRows{discount_.data(), nullptr},
                              FloatRows{logits_.data(), nullptr}, FloatRows{value_.data(), nullptr});
  }

  void run(int simulations) {
    for (int i = 0; i < simulations; ++i) {
      select();
      evaluate();
      expand();
    }
  }

  // Takes a selection made outside select() (by expand_and_select) as the current one.
  void adopt(const std::vector<int32_t>& parent, const std::vector<int32_t>& action, const std::vector<int32_t>& node,
             const std::vector<uint8_t>& is_new) {
    parent_ = parent;
    action_ = action;
    node_ = node;
    is_new_ = is_new;
  }

  // Follows a reroot's id map so later selections read the right embeddings.
  void permute(const std::vector<int64_t>& old_ids) {
    std::vector<uint64_t> moved(embedding_);
    for (size_t k = 0; k < old_ids.size(); ++k) {
      const size_t b = k % B_;
      moved[k] = embedding_[static_cast<size_t>(old_ids[k]) * B_ + b];
    }
    embedding_ = moved;
  }

  const std::vector<int32_t>& parent() const { return parent_; }
  const std::vector<int32_t>& action() const { return action_; }
  const std::vector<int32_t>& node() const { return node_; }
  const std::vector<uint8_t>& is_new() const { return is_new_; }
  std::vector<float>& reward() { return reward_; }
  std::vector<float>& discount() { return discount_; }
  std::vector<float>& value() { return value_; }
  std::vector<float>& logits() { return logits_; }

 private:
  size_t row(int32_t node, int b) const { return static_cast<size_t>(node) * B_ + b; }

  Search& search_;
  Model model_;
  int B_, A_;
  std::vector<uint64_t> embedding_;
  std::vector<int32_t> parent_, action_, node_;
  std::vector<uint8_t> is_new_;
  std::vector<float> reward_, discount_, value_, logits_;
};

struct Summary {
  std::vector<int32_t> counts;
  std::vector<double> q, value;
  bool operator==(const Summary& o) const { return counts == o.counts && q == o.q && value == o.value; }
};

inline Summary summary(const Search& s) {
  const int B = s.tree().batch_size(), A = s.tree().num_actions();
  Summary out{std::vector<int32_t>(static_cast<size_t>(B) * A), std::vector<double>(static_cast<size_t>(B) * A),
              std::vector<double>(B)};
  s.summary(out.counts.data(), out.q.data(), out.value.data());
  return out;
}

inline std::vector<float> random_logits(int B, int A, uint64_t seed) {
  pymbrl::Rng rng(seed);
  std::vector<float> out(static_cast<size_t>(B) * A);
  for (float& x : out) x = static_cast<float>(2.0 * rng.uniform() - 1.0);
  return out;
}

}  // namespace mcts_test
