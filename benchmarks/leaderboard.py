"""The leaderboard: every agent config in agents/ on every registered dialogue env, held-out personas.

Run: python benchmarks/leaderboard.py [--quick] [--agent CONFIG ...] [--env ID ...] [--human HUMAN]
     (the same as ``dialogue-gym leaderboard``; ``--help`` lists every option)

Writes leaderboard/results.jsonl (one row per episode, appended as they finish: rerun to resume)
and leaderboard/leaderboard.{md,csv,png}. See dialogue_gym/leaderboard/ for the library.
"""

from dialogue_gym.leaderboard.cli import main

if __name__ == "__main__":
    main()
