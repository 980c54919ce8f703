#!/usr/bin/env python3
"""Writes the chart's alerts, recording rules and Grafana dashboards from Thanos' mixin.

    helm/scripts/gen-mixin.py

Reads the mixin's generated output as Thanos ships it (helm/mixin/thanos: examples/alerts
and examples/dashboards of thanos-io/thanos, Apache-2.0, see helm/mixin/thanos/README.md)
and writes, per component the chart deploys, helm/strata/files/mixin/rules/COMPONENT.yaml
(the rule groups of a PrometheusRule) and helm/strata/files/mixin/dashboards/COMPONENT.json.
What changes from Thanos':

- only the components Strata has (compact, query, query-frontend, sidecar, store): the
  receive, rule and bucket-replicate groups, alerts and dashboard rows are left out;
- the job selectors (`job=~".*thanos-query.*"`) become placeholders (`__STRATA_JOB_QUERY__`)
  that the chart's templates replace with the job names its ServiceMonitors give;
- the dashboards' "Resources" row reads the Go runtime (go_memstats_*, go_goroutines,
  go_gc_duration_seconds), which a Rust process does not have: it shows process_* instead
  (resident and virtual memory, CPU, open file descriptors);
- dashboard titles read "Strata / …" and uids differ from Thanos', so both can be installed;
- two compactor panels read names Thanos renamed long ago (its mixin drifted from its code):
  thanos_compact_downsample_failed_total is thanos_compact_downsample_failures_total, and
  thanos_compact_blocks_marked_for_deletion_total is thanos_compact_blocks_marked_total
  with marker="deletion-mark.json" (Thanos' CHANGELOG, #3410);
- the store's series-operation quantiles read four histograms by their bare names (native
  histograms); over the classic histograms Thanos and Strata expose they read NAME_bucket.

helm/check runs this and fails when the committed files differ from its output.
"""
import copy
import hashlib
import json
import os
import re

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "mixin", "thanos")
OUT = os.path.join(HERE, "..", "strata", "files", "mixin")

# component -> (Thanos' selector name, placeholder)
COMPONENTS = {
    "compact": "COMPACT",
    "query": "QUERY",
    "query-frontend": "QUERY_FRONTEND",
    "sidecar": "SIDECAR",
    "store": "STORE",
}
LEFT_OUT = ("receive", "rule", "bucket-replicate")
# Names in Thanos' dashboards that its code no longer exposes -> what it exposes.
RENAMED = (
    ("thanos_compact_downsample_failed_total{", "thanos_compact_downsample_failures_total{"),
    (
        "thanos_compact_blocks_marked_for_deletion_total{",
        'thanos_compact_blocks_marked_total{marker=\\"deletion-mark.json\\", ',
    ),
)


def placeholders(text):
    """Thanos' default job selectors -> the chart's placeholders (longest name first)."""
    for component in sorted(COMPONENTS, key=len, reverse=True):
        text = text.replace(
            f".*thanos-{component}.*", f"__STRATA_JOB_{COMPONENTS[component]}__"
        )
    return text


def mentions_left_out(text):
    return any(f"thanos-{c}" in text for c in LEFT_OUT)


class Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, _str)


def rules():
    alerts = yaml.safe_load(open(os.path.join(SOURCE, "alerts.yaml")))["groups"]
    recording = yaml.safe_load(open(os.path.join(SOURCE, "rules.yaml")))["groups"]
    out = {}
    for component in COMPONENTS:
        groups = []
        for group in alerts + recording:
            name = group["name"]
            if name in (f"thanos-{component}", f"thanos-{component}.rules"):
                groups.append(group)
        # The "is down" alerts, one group per component so each PrometheusRule stands alone.
        absent = [
            rule
            for group in alerts
            if group["name"] == "thanos-component-absent"
            for rule in group["rules"]
            if f'job=~".*thanos-{component}.*"' in rule["expr"]
        ]
        if absent:
            groups.append({"name": f"thanos-{component}-absent", "rules": absent})
        if groups:
            text = yaml.dump(groups, Dumper=Dumper, sort_keys=False, width=1000)
            out[component] = placeholders(text)
    return out


def process_panels(resources_row):
    """The Resources row over process_* metrics, in the shape of Thanos' panels."""
    template = resources_row["panels"][0]

    def panel(title, unit, targets, panel_id):
        p = copy.deepcopy(template)
        p["title"] = title
        p["id"] = panel_id
        p["yaxes"][0]["format"] = unit
        p["targets"] = [
            {
                "expr": expr,
                "format": "time_series",
                "intervalFactor": 2,
                "legendFormat": legend,
                "legendLink": None,
                "step": 10,
            }
            for expr, legend in targets
        ]
        return p

    ids = [p["id"] for p in resources_row["panels"]]
    return [
        panel(
            "Memory Used",
            "bytes",
            [
                ('process_resident_memory_bytes{job=~"$job"}', "resident {{instance}}"),
                ('process_virtual_memory_bytes{job=~"$job"}', "virtual {{instance}}"),
            ],
            ids[0],
        ),
        panel(
            "CPU",
            "short",
            [
                (
                    'rate(process_cpu_seconds_total{job=~"$job"}[$__rate_interval])',
                    "cores {{instance}}",
                )
            ],
            ids[1],
        ),
        panel(
            "Open File Descriptors",
            "short",
            [
                ('process_open_fds{job=~"$job"}', "open {{instance}}"),
                ('process_max_fds{job=~"$job"}', "limit {{instance}}"),
            ],
            ids[2],
        ),
    ]


def dashboards():
    out = {}
    for component in list(COMPONENTS) + ["overview"]:
        d = json.load(open(os.path.join(SOURCE, "dashboards", f"{component}.json")))
        rows = []
        for row in d["rows"]:
            if mentions_left_out(json.dumps(row)) or row["title"] in ("Receive", "Rule"):
                continue
            if row["title"] == "Resources":
                row = dict(row, panels=process_panels(row))
            rows.append(row)
        d["rows"] = rows
        d["uid"] = hashlib.md5(f"strata-{component}".encode()).hexdigest()
        d["tags"] = sorted(set(d.get("tags", [])) | {"strata"})
        text = json.dumps(d, indent=2, sort_keys=True).replace('"Thanos / ', '"Strata / ')
        text = placeholders(text) + "\n"
        for stale, current in RENAMED:
            text = text.replace(stale, current)
        # Quantiles over a bare histogram name read Prometheus' native histograms; Thanos
        # (and Strata) expose these as classic histograms, whose buckets are NAME_bucket.
        text = re.sub(
            r"rate\((thanos_bucket_store_series_(?:blocks_queried|data_fetched|data_touched|result_series))\{",
            r"rate(\1_bucket{",
            text,
        )
        assert "go_" not in re.sub(r"[a-z]go_", "", text), f"{component}: Go runtime metrics left"
        assert "thanos-" not in text.replace("thanos-io", "").replace("thanos-mixin", ""), f"{component}: a Thanos job left"
        out[component] = text
    return out


def main():
    os.makedirs(os.path.join(OUT, "rules"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "dashboards"), exist_ok=True)
    header = (
        "# Generated by helm/scripts/gen-mixin.py from Thanos' mixin (helm/mixin/thanos,\n"
        "# Apache-2.0). Do not edit: change the script and run it.\n"
    )
    for component, text in rules().items():
        with open(os.path.join(OUT, "rules", f"{component}.yaml"), "w") as f:
            f.write(header + text)
    for component, text in dashboards().items():
        with open(os.path.join(OUT, "dashboards", f"{component}.json"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
