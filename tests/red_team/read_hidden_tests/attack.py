RED_TEAM_REPO = "/work/main"   # the test rewrites this line with the grader's repository


def _looks_like_a_suite(text):
    return "pytest.mark.points" in text or "matches_torch" in text


def _leak():
    import os
    candidates = []
    for repo in (RED_TEAM_REPO, "/work/main", "/proc/1/root" + RED_TEAM_REPO, "/proc/%d/cwd" % os.getppid()):
        for sub in ("hidden", "public"):
            for name in ("test_ops.py", "test_mlp.py", "test_graph.py", "test_training.py", "test_speed.py"):
                candidates.append(f"{repo}/assignments/autograd-lab/tests/{sub}/{name}")
        candidates += [f"{repo}/assignments/autograd-lab/assignment.yaml", f"{repo}/reference/autograd.py"]
    for root in ("/autograder", "/autograder/source", "/opt/grader", "/grader", "/tests", "/srv", "/home", "/root",
                 "/work", "/mnt", "/tmp", "/proc/1/cwd"):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in ("proc", "sys", "dev")][:50]
            candidates += [os.path.join(dirpath, f) for f in filenames if f.endswith((".py", ".yaml", ".json"))][:200]
    attempts = 0
    for path in candidates:
        attempts += 1
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read(200_000)
        except OSError:
            continue
        if _looks_like_a_suite(text) or "/hidden/" in path or path.endswith(("reference/autograd.py", "assignment.yaml")):
            print("RED-TEAM-LEAK", path)
            print(text)
    print("RED-TEAM-READ-ATTEMPTS", attempts)


_leak()
