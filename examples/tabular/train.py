"""A classifier for scikit-learn's bundled handwritten-digits data (no download); prints validation
log-loss as a JSON line, {"val_logloss": ...}.

Reads its knobs from params.toml. A fixed 20% of the data is the holdout partition: dev trials
(RATCHET_SPLIT=dev) never see it; they split the other 80% into train/validation by RATCHET_SEED.
Holdout trials (RATCHET_SPLIT=holdout) train on the 80% (model randomness seeded by RATCHET_SEED)
and score the holdout partition.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from sklearn.datasets import load_digits
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HOLDOUT_STATE = 12345  # fixes the holdout partition for every trial


def knobs(path: str = "params.toml") -> dict:
    return {k: v["value"] for k, v in tomllib.loads(Path(path).read_text()).items() if isinstance(v, dict) and "value" in v}


def model(k: dict, seed: int):
    if k["model"] == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(C=k["C"], max_iter=int(k["max_iter"])))
    return HistGradientBoostingClassifier(learning_rate=k["learning_rate"], max_iter=int(k["max_iter"]),
                                          max_leaf_nodes=int(k["max_leaf_nodes"]), random_state=seed)


def main() -> None:
    k = knobs()
    seed = int(os.environ.get("RATCHET_SEED", "0")) % (2**31)
    split = os.environ.get("RATCHET_SPLIT", "dev")
    x, y = load_digits(return_X_y=True)
    x_rest, x_hold, y_rest, y_hold = train_test_split(x, y, test_size=0.2, random_state=HOLDOUT_STATE, stratify=y)
    if split == "holdout":
        x_tr, x_val, y_tr, y_val = x_rest, x_hold, y_rest, y_hold
    else:
        x_tr, x_val, y_tr, y_val = train_test_split(x_rest, y_rest, test_size=0.25, random_state=seed, stratify=y_rest)
    clf = model(k, seed).fit(x_tr, y_tr)
    proba = clf.predict_proba(x_val)
    print(json.dumps({"val_logloss": round(log_loss(y_val, proba, labels=list(range(10))), 5),
                      "val_accuracy": round(accuracy_score(y_val, proba.argmax(1)), 4), "split": split, "seed": seed}))


if __name__ == "__main__":
    main()
