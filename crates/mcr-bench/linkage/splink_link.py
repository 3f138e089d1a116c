#!/usr/bin/env python3
"""Splink (PyPI, pinned to 5.0.0) on the linkage benchmark's two files, as the peer to beat.

Usage: splink_link.py A.csv B.csv OUT.csv sex|no-sex

A and B are `unique_id,given,family,dob,sex,postcode,address` (dob `YYYY-MM-DD`, empty when
unknown; address the first line). Splink's out-of-the-box comparisons for names, date of
birth, sex, postcode and the address's first line (Levenshtein within 1 and 2);
u from random sampling, m by expectation maximisation on two blocking rules (as Splink's own
tutorials do); every pair with a match probability of at least 0.01 written to OUT as
`b_id,a_id,probability`. Nothing is tuned on the truth.
"""
import sys

import pandas as pd
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

a_path, b_path, out_path, sex = sys.argv[1:5]
read = dict(dtype=str, keep_default_na=False)
frames = []
for path, name in ((a_path, "a"), (b_path, "b")):
    df = pd.read_csv(path, **read)
    df = df.replace("", None)
    frames.append((df, name))

comparisons = [
    cl.NameComparison("given"),
    cl.NameComparison("family"),
    cl.DateOfBirthComparison("dob", input_is_string=True, datetime_format="%Y-%m-%d"),
    cl.PostcodeComparison("postcode"),
    cl.LevenshteinAtThresholds("address", [1, 2]),
]
if sex == "sex":
    comparisons.append(cl.ExactMatch("sex"))

settings = SettingsCreator(
    link_type="link_only",
    comparisons=comparisons,
    blocking_rules_to_generate_predictions=[
        block_on("dob"),
        block_on("family", "given"),
        block_on("postcode", "given"),
        block_on("substr(family, 1, 2)", "substr(dob, 1, 4)"),
    ],
    retain_matching_columns=False,
)
db = DuckDBAPI()
linker = Linker(
    [db.register(df, table_name=name) for df, name in frames],
    settings,
    log_level="WARNING",
)
linker.training.estimate_probability_two_random_records_match(
    [block_on("family", "given", "dob")], recall=0.7
)
linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
linker.training.estimate_parameters_using_expectation_maximisation(block_on("family", "given"))
pred = linker.inference.predict(threshold_match_probability=0.01).as_pandas_dataframe()

with open(out_path, "w") as out:
    out.write("b_id,a_id,probability\n")
    for row in pred.itertuples(index=False):
        l_src, r_src = row.source_dataset_l, row.source_dataset_r
        if l_src == "b":
            b_id, a_id = row.unique_id_l, row.unique_id_r
        else:
            b_id, a_id = row.unique_id_r, row.unique_id_l
        out.write(f"{b_id},{a_id},{row.match_probability}\n")
