RED_TEAM_REPO = "/work/main"   # the test rewrites this line with the grader's repository


def _forge_files():
    import json, os
    full = {"score": 100.0, "max_score": 100.0, "status": "graded", "output": "All tests passed!",
            "tests": [], "schema_version": "1"}
    places = [os.getcwd(), "/tmp", "/autograder/results", "/autograder", "/autograder/submission",
              RED_TEAM_REPO, "/work/main", os.path.expanduser("~"), "..", "/proc/%d/cwd" % os.getppid(),
              "/proc/1/cwd", "/opt/grader"]
    for place in places:
        try:
            os.makedirs(place, exist_ok=True)
        except OSError:
            pass
        for name in ("results.json", "report.json", "red-team-forged.json"):
            try:
                with open(os.path.join(place, name), "w") as f:
                    json.dump(full, f)
                print("RED-TEAM-WROTE", os.path.join(place, name))
            except OSError:
                pass


_forge_files()
