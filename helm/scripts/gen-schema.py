#!/usr/bin/env python3
"""Writes helm/strata/values.schema.json. The schema is kept here as Python so that the
repeated shapes (resources, scheduling, TLS, persistence) are written once; run this after
changing values.yaml and commit both."""
import json
import pathlib

def obj(props, required=(), extra=False):
    s = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        s["required"] = list(required)
    return s

string = {"type": "string"}
boolean = {"type": "boolean"}
duration = {"type": "string", "pattern": r"^(0|([0-9]+(ms|s|m|h|d|w|y))+)$"}
size = {"type": "string", "pattern": r"^[0-9]+([KMGT]i?B?|B)?$"}
count = {"type": "integer", "minimum": 0}
positive = {"type": "integer", "minimum": 1}
strings = {"type": "array", "items": string}
free = {"type": "object"}
tls_version = {"type": "string", "enum": ["1.2", "1.3"]}

resources = obj({"requests": free, "limits": free, "claims": {"type": "array"}})
annotations = {"type": "object", "additionalProperties": string}
component_sa = obj({"name": string, "annotations": annotations})
scheduling = {"nodeSelector": {"type": "object", "additionalProperties": string},
              "tolerations": {"type": "array"}, "affinity": free,
              "podAnnotations": annotations, "serviceAccount": component_sa}
autoscaling = obj({"enabled": boolean, "minReplicas": positive, "maxReplicas": positive,
                   "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 0},
                   "targetMemoryUtilizationPercentage": {"type": "integer", "minimum": 0}})
bucket_list = {"type": "array", "items": obj({
    "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
    "existingSecret": {"type": "string", "minLength": 1},
    "key": string,
}, required=["name", "existingSecret"])}
pdb = obj({"enabled": boolean, "maxUnavailable": {"type": ["integer", "string"]}})
service = obj({"type": {"type": "string", "enum": ["ClusterIP", "NodePort", "LoadBalancer"]}})
server_tls = obj({"enabled": boolean, "secretName": string, "clientAuth": boolean,
                  "minVersion": tls_version})
persistence = obj({"enabled": boolean, "size": {"type": "string"}, "storageClass": string})
extra_args = strings
cache_type = {"type": "string", "enum": ["IN-MEMORY", "MEMCACHED"]}
memcached = obj({"addresses": strings, "timeout": duration, "max_idle_connections": count,
                 "max_item_size": {"type": "string"}, "expiration": duration})

schema = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Values of the strata chart",
    **obj({
        "nameOverride": string,
        "fullnameOverride": string,
        "serviceAccount": obj({"create": boolean, "annotations": annotations,
                               "automountServiceAccountToken": boolean}),
        "clusterDomain": string,
        "global": free,
        "image": obj({"repository": string, "tag": string,
                      "pullPolicy": {"type": "string", "enum": ["Always", "IfNotPresent", "Never"]}},
                     required=["repository"]),
        "imagePullSecrets": {"type": "array", "items": obj({"name": string}, required=["name"])},
        "logLevel": {"type": "string", "enum": ["debug", "info", "warn", "error"]},
        "objstore": obj({
            "existingSecret": string,
            "key": {"type": "string", "minLength": 1},
            "config": obj({
                "type": {"type": "string", "enum": ["S3", "s3", "FILESYSTEM", "filesystem"]},
                "config": free,
                "prefix": string,
            }, required=["type"]),
        }),
        "serviceMonitor": obj({"enabled": boolean, "interval": duration,
                               "scrapeTimeout": duration,
                               "labels": {"type": "object", "additionalProperties": string}}),
        "networkPolicy": obj({
            "enabled": boolean, "allowExternal": boolean,
            "httpFrom": {"type": "array", "items": {"type": "object"}},
            "ingressControllerNamespaceSelector": {"type": "object"},
        }),
        "mixin": obj({
            "jobs": obj({k: string for k in
                         ("compact", "query", "queryFrontend", "sidecar", "store")}),
            "prometheusRule": obj({"enabled": boolean, "labels": {
                "type": "object", "additionalProperties": string}}),
            "dashboards": obj({"enabled": boolean,
                               "labels": {"type": "object", "additionalProperties": string},
                               "annotations": {"type": "object",
                                               "additionalProperties": string}}),
        }),
        "memcached": obj({"enabled": boolean, "image": string, "replicas": count,
                          "memoryMB": positive, "maxItemSize": {"type": "string"},
                          "resources": resources}),
        "podSecurityContext": free,
        "containerSecurityContext": free,
        "query": obj({
            "enabled": boolean, "replicas": count,
            "replicaLabels": strings,
            "deduplicationFunc": {"type": "string", "enum": ["penalty", "chain"]},
            "timeout": duration, "maxSamples": positive, "lookbackDelta": duration,
            "extraEndpoints": strings,
            "grpcServerTls": server_tls, "storeClientTls": obj({"secretName": string}),
            "extraArgs": extra_args, "resources": resources, "service": service,
            "podDisruptionBudget": pdb, "autoscaling": autoscaling, **scheduling,
        }),
        "queryFrontend": obj({
            "enabled": boolean, "replicas": count, "downstreamUrl": string,
            "splitInterval": duration, "labelsSplitInterval": duration,
            "maxRetriesPerRequest": count, "maxQueryParallelism": positive,
            "responseCacheMaxFreshness": duration,
            "responseCache": obj({"type": cache_type,
                                  "inMemory": obj({"max_size": {"type": "string"},
                                                   "max_size_items": count,
                                                   "validity": duration}),
                                  "memcached": memcached}, required=["type"]),
            "extraArgs": extra_args, "resources": resources, "service": service,
            "podDisruptionBudget": pdb, "autoscaling": autoscaling, **scheduling,
        }),
        "storeGateway": obj({
            "enabled": boolean, "shards": positive, "replicasPerShard": count,
            "buckets": bucket_list,
            "indexCache": obj({"type": cache_type, "memcached": memcached},
                              required=["type"]),
            "indexCacheSize": size, "syncBlockDuration": duration,
            "seriesSampleLimit": count, "touchedSeriesLimit": count,
            "grpcServerTls": obj({**server_tls["properties"], "serverName": string}),
            "persistence": persistence,
            "extraArgs": extra_args, "resources": resources,
            "podDisruptionBudget": pdb, **scheduling,
        }),
        "compactor": obj({
            "enabled": boolean, "buckets": bucket_list,
            "retention": obj({"resolutionRaw": duration, "resolution5m": duration,
                              "resolution1h": duration}),
            "deduplicationReplicaLabels": strings,
            "downsampling": boolean, "concurrency": positive,
            "deleteDelay": duration, "waitInterval": duration,
            "persistence": persistence, "extraArgs": extra_args, "resources": resources,
            **scheduling,
        }),
        "sidecar": obj({
            "enabled": boolean,
            "prometheusSelector": {"type": "object", "additionalProperties": string,
                                   "minProperties": 1},
            "grpcPort": {"type": "integer", "minimum": 1, "maximum": 65535},
            "httpPort": {"type": "integer", "minimum": 1, "maximum": 65535},
            "ingress": obj({
                "enabled": boolean, "className": string, "host": string,
                "tlsSecretName": string,
                "clientCASecret": {"type": "string", "pattern": "^([a-z0-9-]+/[a-z0-9.-]+)?$"},
                "verifyDepth": positive,
                "annotations": {"type": "object", "additionalProperties": string},
            }),
            "query": obj({"enabled": boolean, "replicas": count, "podDisruptionBudget": pdb,
                          "resources": resources, "extraArgs": strings}),
        }),
        "observees": {"type": "array", "items": obj({
            "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "endpoint": {"type": "string", "pattern": r"^[^\s:]+:[0-9]+$"},
            "serverName": string,
            "tlsSecretName": {"type": "string", "minLength": 1},
        }, required=["name", "endpoint", "tlsSecretName"])},
        "observeeQuery": obj({"replicas": count, "resources": resources,
                              "extraArgs": extra_args}),
    }),
}

out = pathlib.Path(__file__).resolve().parent.parent / "strata" / "values.schema.json"
out.write_text(json.dumps(schema, indent=2) + "\n")
