"""A pure-Python MiniPacman: one game object, Python loops, a numpy frame per step.

The baseline of ``bench_minipacman.py``: what users of the I2A seed code run (one game per object,
stepped in a Python loop), written from the same rules as pymbrl's C++ core
(``src/cpp/pymbrl/envs/minipacman.h``; the module docstring of ``pymbrl.envs.minipacman``
states them). Given a generator that draws like the core's (:class:`Xoshiro256`, seeded as the
core seeds game i), it plays the same game step for step: ``tests/envs/test_minipacman.py``
checks frames, rewards and ends against the core, so this file doubles as a readable statement of
the rules. With the default generator (``random.Random``) it is what the benchmark times.
"""

from __future__ import annotations

import math
import random

import numpy as np

MAP_ROWS = (
    "1111111111111111111",
    "1000100000000010001",
    "1010101111111010101",
    "1000000000000000001",
    "1010101111111010101",
    "1010000000000000101",
    "1011110111110111101",
    "1000000111110000001",
    "1011110111110111101",
    "1010000000000000101",
    "1010101111111010101",
    "1000000000000000001",
    "1010101111111010101",
    "1000100000000010001",
    "1111111111111111111",
)
WALLS = [[ch == "1" for ch in row] for row in MAP_ROWS]
FREE = [(r, c) for r in range(len(MAP_ROWS)) for c in range(len(MAP_ROWS[0])) if not WALLS[r][c]]

# Directions 0 right, 1 up, 2 left, 3 down as (d_row, d_col); action a moves Pacman in direction a - 1.
DIRECTIONS = ((0, 1), (-1, 0), (0, -1), (1, 0))

MODES = {
    # step, food, pill, ghost, death rewards; what ends a level; level timer (-1: none)
    "regular": (0.0, 1.0, 2.0, 5.0, 0.0, "food", -1),
    "avoid": (0.1, -0.1, -5.0, -10.0, -20.0, "food", 128),
    "hunt": (0.0, 0.0, 1.0, 10.0, -20.0, "ghosts", -1),
    "ambush": (0.0, -0.1, 0.0, 10.0, -20.0, "ghosts", -1),
    "rush": (0.0, -0.1, 10.0, 0.0, 0.0, "pills", -1),
}
PILL_DURATION = 20
MASK64 = 2**64 - 1


class Xoshiro256:
    """The core's generator (``pymbrl::Rng``: xoshiro256**, seeded by SplitMix64; integers by
    Lemire's method, floats from the top 53 bits), with the two draws the game makes."""

    def __init__(self, seed: int):
        self.s = []
        x = seed & MASK64
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK64
            self.s.append(self._mix(x))

    @staticmethod
    def _mix(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    @classmethod
    def for_game(cls, seed: int, index: int) -> "Xoshiro256":
        """The generator of game ``index`` in a core batch seeded with ``seed`` (derive_seed)."""
        x = (seed ^ (index * 0xD1B54A32D192ED03)) & MASK64
        return cls(cls._mix((x + 0x9E3779B97F4A7C15) & MASK64))

    def next_u64(self) -> int:
        s = self.s
        rotl = lambda v, k: ((v << k) | (v >> (64 - k))) & MASK64  # noqa: E731
        result = (rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def randrange(self, n: int) -> int:
        m = self.next_u64() * n
        low = m & MASK64
        if low < n:
            threshold = (-n % 2**64) % n
            while low < threshold:
                m = self.next_u64() * n
                low = m & MASK64
        return m >> 64

    def random(self) -> float:
        return (self.next_u64() >> 11) * 2.0**-53


class MiniPacman:
    """One game. ``step(action)`` returns ``(frame uint8 [15, 19, 3], reward, terminated,
    truncated)``; after an end, call ``reset()``. ``rng``: anything with ``randrange(n)`` and
    ``random()`` (default ``random.Random(seed)``)."""

    def __init__(self, mode: str = "regular", frame_cap: int = 1000, seed: int = 0, rng=None):
        (self.step_reward, self.food_reward, self.pill_reward, self.ghost_reward, self.death_reward,
         self.ends_level_on, self.level_timer) = MODES[mode]
        self.frame_cap = frame_cap
        self.rng = rng if rng is not None else random.Random(seed)
        self.reset()

    def reset(self) -> np.ndarray:
        self.level = 1
        self.frame = 0
        self.start_level()
        return self.render()

    def start_level(self):
        self.food = {cell: True for cell in FREE}
        self.pills = [FREE[self.rng.randrange(len(FREE))] for _ in range(2)]
        self.pacman = FREE[self.rng.randrange(len(FREE))]
        pr, pc = self.pacman
        allowed = [(r, c) for r, c in FREE if not (pr - 5 <= r < pr + 5 and pc - 5 <= c < pc + 5)]
        self.ghosts = []
        for _ in range(1 + (self.level - 1) // 2):
            cell = allowed[self.rng.randrange(len(allowed))]
            self.ghosts.append({"pos": cell, "direction": self.rng.randrange(4)})
        self.speed = 0.5 + 0.1 * (self.level - 1)
        self.power = 0
        self.timer = 0

    def next_level(self):
        self.level += 1
        self.start_level()

    @staticmethod
    def moved(pos, direction):
        r, c = pos[0] + DIRECTIONS[direction][0], pos[1] + DIRECTIONS[direction][1]
        return pos if WALLS[r][c] else (r, c)

    def step(self, action: int):
        self.frame += 1
        reward = self.step_reward
        self.timer += 1
        self.power = max(0, self.power - 1)
        if action != 0:
            self.pacman = self.moved(self.pacman, action - 1)
        if self.food.get(self.pacman):
            self.food[self.pacman] = False
            reward += self.food_reward
            if self.ends_level_on == "food" and not any(self.food.values()):
                self.next_level()
        if self.pacman in self.pills:
            self.pills.remove(self.pacman)  # the first such pill
            reward += self.pill_reward
            self.power = PILL_DURATION
            if self.ends_level_on == "pills" and not self.pills:
                self.next_level()

        dead = False
        speed = self.speed * (0.5 if self.power > 0 else 1.0)
        for ghost in list(self.ghosts):
            eaten = False
            for phase in range(2):
                if ghost["pos"] == self.pacman:
                    if self.power == 0:
                        if not dead:
                            reward += self.death_reward
                        dead = True
                    else:
                        self.ghosts.remove(ghost)
                        reward += self.ghost_reward
                        if self.ends_level_on == "ghosts" and not self.ghosts:
                            self.next_level()
                        eaten = True
                        break
                if phase == 0 and self.rng.random() < speed:
                    self.move_ghost(ghost)
            if eaten:
                break

        if not dead and self.timer == self.level_timer:
            self.next_level()
        truncated = not dead and self.frame_cap > 0 and self.frame >= self.frame_cap
        # The core adds each step's reward rounded to float32; so does the returned reward.
        return self.render(), float(np.float32(reward)), dead, truncated

    def move_ghost(self, ghost):
        pos, direction = ghost["pos"], ghost["direction"]
        available = [d for d in range(4) if self.moved(pos, d) != pos]
        reverse = (direction + 2) % 4
        if len(available) == 1:
            direction = available[0]
        elif len(available) == 2:
            if direction not in available:
                direction = [d for d in available if d != reverse][0]
        else:
            candidates = [d for d in available if d != reverse]
            dr, dc = self.pacman[0] - pos[0], self.pacman[1] - pos[1]
            norm = math.hypot(dr, dc)
            if norm == 0:
                if direction not in available:
                    direction = candidates[0]
            elif self.power == 0 and self.rng.random() < 0.05:
                direction = candidates[self.rng.randrange(len(candidates))]
            else:
                scores = [(dr / norm) * DIRECTIONS[d][0] + (dc / norm) * DIRECTIONS[d][1] for d in candidates]
                best = max(scores) if self.power == 0 else min(scores)
                direction = candidates[scores.index(best)]
        ghost["direction"] = direction
        ghost["pos"] = self.moved(pos, direction)

    def render(self) -> np.ndarray:
        image = np.zeros((15, 19, 3), dtype=np.uint8)
        for r in range(15):
            for c in range(19):
                if WALLS[r][c]:
                    image[r, c] = (255, 255, 255)
                elif self.food[(r, c)]:
                    image[r, c] = (0, 0, 255)
        for pill in self.pills:
            image[pill] = (0, 255, 255)
        edible = math.floor(255 * self.power / PILL_DURATION + 0.5)
        for ghost in self.ghosts:
            image[ghost["pos"]] = (255, edible, 0)
        image[self.pacman] = (0, 255, 0)
        return image
