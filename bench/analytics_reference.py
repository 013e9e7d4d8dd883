"""The reference Python stack for bench/analytics, on the same purchases file as cardcrm:
pandas RFM (quintiles of rank(method="first"), the usual recipe), scikit-learn KMeans on
the same standardised features cardcrm clusters (-ln(1+recency days), ln(1+purchases),
ln(1+spend)), and lifetimes (BG/NBD, Gamma-Gamma, 12-month CLV at 1% a month, weeks).
Prints one JSON line of timings and, for the agreement check, writes the RFM scores and
the CLV results as CSV next to OUT_PREFIX.

    python analytics_reference.py PURCHASES.csv AS_OF OUT_PREFIX CLUSTERS RESTARTS
"""

import json
import resource
import sys
import time

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

path, as_of, out = sys.argv[1:4]
clusters, restarts = int(sys.argv[4]), int(sys.argv[5])
timings = {}

start = time.perf_counter()
# The generator's transactions file: the analyst's three columns, under their import names.
purchases = pd.read_csv(
    path, usecols=["customer_external_id", "occurred_at", "amount"], dtype={"customer_external_id": str}, parse_dates=["occurred_at"]
).rename(columns={"customer_external_id": "customer_id", "occurred_at": "timestamp"})
timings["load_s"] = time.perf_counter() - start

start = time.perf_counter()
end = pd.Timestamp(as_of) + pd.Timedelta(days=1)
upto = purchases[purchases["timestamp"] < end]
rfm = upto.groupby("customer_id").agg(last=("timestamp", "max"), frequency=("timestamp", "size"), monetary=("amount", "sum"))
# Ties are broken by position: put customers in the order they first appear in the file, as
# cardcrm numbers them.
first_seen = purchases["customer_id"].drop_duplicates()
rfm = rfm.reindex(first_seen[first_seen.isin(rfm.index)])
rfm["recency_days"] = (pd.Timestamp(as_of).normalize() - rfm["last"].dt.normalize()).dt.days
rfm["r"] = pd.qcut(rfm["recency_days"].rank(method="first"), 5, labels=[5, 4, 3, 2, 1]).astype(int)
rfm["f"] = pd.qcut(rfm["frequency"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5]).astype(int)
rfm["m"] = pd.qcut(rfm["monetary"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5]).astype(int)
timings["rfm_s"] = time.perf_counter() - start
# Not timed, for the agreement: the M score again with each total rounded to fen. The float
# sums above can make two customers' equal totals differ by an ulp, which swaps their
# "first" ranks; cardcrm sums integer fen, so equal totals stay equal.
rfm["m_fen"] = pd.qcut((rfm["monetary"] * 100).round().rank(method="first"), 5, labels=[1, 2, 3, 4, 5]).astype(int)
rfm[["r", "f", "m", "m_fen"]].to_csv(out + "-pandas-rfm.csv")

features = np.column_stack(
    [-np.log1p(rfm["recency_days"].to_numpy(float)), np.log1p(rfm["frequency"].to_numpy(float)), np.log1p(rfm["monetary"].to_numpy(float))]
)
start = time.perf_counter()
scaled = StandardScaler().fit_transform(features)
one = KMeans(n_clusters=clusters, n_init=1, random_state=0, algorithm="lloyd").fit(scaled)
timings["kmeans_one_restart_s"] = time.perf_counter() - start
timings["kmeans_one_restart_inertia"] = float(one.inertia_)
start = time.perf_counter()
best = KMeans(n_clusters=clusters, n_init=restarts, random_state=0, algorithm="lloyd").fit(scaled)
timings["kmeans_restarts_s"] = time.perf_counter() - start
timings["kmeans_restarts_inertia"] = float(best.inertia_)

start = time.perf_counter()
summary = summary_data_from_transaction_data(
    purchases, "customer_id", "timestamp", monetary_value_col="amount", observation_period_end=as_of, freq="W"
)
timings["summary_s"] = time.perf_counter() - start
start = time.perf_counter()
bgf = BetaGeoFitter(penalizer_coef=0.0)
bgf.fit(summary["frequency"], summary["recency"], summary["T"])
timings["bgnbd_fit_s"] = time.perf_counter() - start
repeat = summary[summary["frequency"] > 0]
start = time.perf_counter()
ggf = GammaGammaFitter(penalizer_coef=0.0)
ggf.fit(repeat["frequency"], repeat["monetary_value"])
timings["gamma_gamma_fit_s"] = time.perf_counter() - start
start = time.perf_counter()
bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time
clv = ggf.customer_lifetime_value(
    bgf, summary["frequency"], summary["recency"], summary["T"], summary["monetary_value"], time=12, discount_rate=0.01, freq="W"
)
timings["clv_s"] = time.perf_counter() - start
pd.DataFrame({"clv": clv}).to_csv(out + "-lifetimes-clv.csv")
timings["bgnbd"] = {k: float(v) for k, v in bgf.params_.items()}
# lifetimes minimises the mean negative log-likelihood.
timings["bgnbd_log_likelihood"] = -float(bgf._negative_log_likelihood_) * len(summary)
timings["gamma_gamma_log_likelihood"] = -float(ggf._negative_log_likelihood_) * len(repeat)
timings["customers"] = len(summary)
timings["gamma_gamma"] = {k: float(v) for k, v in ggf.params_.items()}
timings["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(timings))
