"""Ordinary competitive-programming solutions: standard library, recursion-heavy, I/O-heavy and numeric ones.

Used three ways: their system calls under the worker were recorded into ``seccomp_trace.txt`` (the allowlist is
checked against that trace, ``test_seccomp_allowlist.py``); they must all run correctly under every layer; and
``verl-rlif vote --task code`` on them must give the keys recorded before the default-deny filter
(``vote_keys_before.json``). Each entry: (name, program, stdin inputs, expected stdout per input).
"""

import json

SOLUTIONS = [
    ("sum", "a, b = map(int, input().split())\nprint(a + b)", ["1 2\n", "10 -3\n"], ["3", "7"]),
    (
        "sort_io",
        "import sys\ndata = sys.stdin.buffer.read().split()\nn = int(data[0])\nxs = sorted(map(int, data[1:n + 1]))\n"
        "sys.stdout.write('\\n'.join(map(str, xs)) + '\\n')",
        ["5\n3 1 4 1 5\n", "3\n-1 -2 -3\n"],
        ["1\n1\n3\n4\n5", "-3\n-2\n-1"],
    ),
    (
        "print_loop",
        "n = int(input())\nfor i in range(n):\n    print(i * i)",
        ["2000\n", "3\n"],
        ["", "0\n1\n4"],  # "": any output (the long one is compared by its hash)
    ),
    (
        "deep_recursion",
        "import sys, resource, threading\nsys.setrecursionlimit(1 << 20)\n"
        "resource.setrlimit(resource.RLIMIT_STACK, (2**29, resource.RLIM_INFINITY))\n"
        "threading.stack_size(1 << 26)\n"
        "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
        "def main():\n    print(depth(int(input())))\n"
        "t = threading.Thread(target=main)\nt.start()\nt.join()",
        ["50000\n", "10\n"],
        ["50000", "10"],
    ),
    (
        "memo_dp",
        "from functools import lru_cache\nimport sys\nsys.setrecursionlimit(10000)\n"
        "@lru_cache(maxsize=None)\ndef f(n):\n    return n if n < 2 else (f(n - 1) + f(n - 2)) % 1000000007\n"
        "print(f(int(input())))",
        ["3000\n", "10\n"],
        ["", "55"],
    ),
    (
        "graph_bfs",
        "from collections import deque, defaultdict\nimport sys\ninput = sys.stdin.readline\n"
        "n, m = map(int, input().split())\ng = defaultdict(list)\nfor _ in range(m):\n"
        "    a, b = map(int, input().split())\n    g[a].append(b)\n    g[b].append(a)\n"
        "dist = {1: 0}\nq = deque([1])\nwhile q:\n    u = q.popleft()\n    for v in g[u]:\n"
        "        if v not in dist:\n            dist[v] = dist[u] + 1\n            q.append(v)\n"
        "print(dist.get(n, -1))",
        ["4 3\n1 2\n2 3\n3 4\n", "3 1\n1 2\n"],
        ["3", "-1"],
    ),
    (
        "heap_dijkstra",
        "import heapq\nn = int(input())\nw = [list(map(int, input().split())) for _ in range(n)]\n"
        "d = [float('inf')] * n\nd[0] = 0\nh = [(0, 0)]\nwhile h:\n    c, u = heapq.heappop(h)\n"
        "    if c > d[u]:\n        continue\n    for v in range(n):\n        if w[u][v] and c + w[u][v] < d[v]:\n"
        "            d[v] = c + w[u][v]\n            heapq.heappush(h, (d[v], v))\nprint(*d)",
        ["3\n0 4 1\n4 0 2\n1 2 0\n", "1\n0\n"],
        ["0 3 1", "0"],
    ),
    (
        "numeric_float",
        "import math\nfrom fractions import Fraction\nfrom decimal import Decimal, getcontext\n"
        "getcontext().prec = 50\nx = float(input())\nprint(f'{math.sqrt(x):.6f}', Fraction(1, 3) + Fraction(1, 6),\n"
        "      Decimal(2).sqrt())",
        ["2\n", "9\n"],
        ["1.41421 1/2 1.41421", "3 1/2 1.41421"],  # decimals are compared at 6 significant digits
    ),
    (
        "numpy_linalg",
        "import numpy as np\nn = int(input())\na = np.arange(n * n, dtype=np.float64).reshape(n, n) + np.eye(n)\n"
        "print(round(float(np.linalg.det(a)), 3), int(a.sum()))",
        ["3\n", "2\n"],
        ["", ""],
    ),
    (
        "stdlib_mix",
        "import itertools, string, re, bisect, json, datetime, statistics, collections, time, random, os\n"
        "s = input().strip()\nprint(len(list(itertools.permutations(s))), re.sub('[aeiou]', '*', s),\n"
        "      bisect.bisect(sorted(s), 'm'), json.dumps(collections.Counter(s).most_common(1)),\n"
        "      datetime.date(2024, 1, 1).weekday(), statistics.median([3, 1, 2]), random.randint(1, 6),\n"
        "      time.time() > 0, os.getcwd() != '', string.ascii_lowercase[:3])",
        ["abc\n", "hello\n"],
        ["", ""],
    ),
    (
        "files_in_cwd",
        "import tempfile\nwith tempfile.TemporaryFile() as f:\n    f.write(input().encode())\n    f.seek(0)\n"
        "    print(f.read().decode()[::-1])",
        ["abc\n", "xy\n"],
        ["cba", "yx"],
    ),
    (
        "fn_like_class",
        "class Solution:\n    def solve(self, xs):\n        return sorted(xs, key=lambda x: (-x, x))\n"
        "print(Solution().solve(list(map(int, input().split()))))",
        ["3 1 2\n", "5\n"],
        ["[3, 2, 1]", "[5]"],
    ),
    (
        "big_int",
        "n = int(input())\nf = 1\nfor i in range(2, n + 1):\n    f *= i\nprint(len(str(f)), f % 998244353)",
        ["2000\n", "5\n"],
        [None, "3 120"],  # None: no output (2000! has more digits than int -> str allows: ValueError)
    ),
    (
        "exception",
        "xs = list(map(int, input().split()))\nprint(xs[5])",
        ["1 2\n", "1 2 3 4 5 6\n"],
        [None, "6"],
    ),
    (
        "input_loop_eof",
        "import sys\ntotal = 0\nfor line in sys.stdin:\n    total += sum(map(int, line.split()))\nprint(total)",
        ["1 2\n3 4\n", "\n"],
        ["10", "0"],
    ),
    (
        "sys_exit",
        "import sys\nn = int(input())\nif n < 0:\n    print('NO')\n    sys.exit(0)\nprint('YES')\nexit()",
        ["-1\n", "4\n"],
        ["NO", "YES"],
    ),
]


def vote_lines() -> list[dict]:
    """The solutions as ``verl-rlif vote --task code`` input lines (two copies of each, so clusters form)."""
    lines = []
    for name, program, inputs, _ in SOLUTIONS:
        for copy in range(2):
            response = f"Here:\n```python\n{program}\n# copy {copy}\n```"
            lines.append({"group": name, "response": response, "extra_info": {"inputs": inputs}})
    return lines


if __name__ == "__main__":  # write the vote input file (used to record the keys on main before the change)
    import sys

    with open(sys.argv[1], "w") as out:
        out.write("".join(json.dumps(line) + "\n" for line in vote_lines()))
