#!/usr/bin/env bash
# An OpenTelemetry Collector for make test-otel: a small collector main (the
# OTLP receiver and the OTLP/HTTP exporter, which forwards what arrived to
# the test) built from go.opentelemetry.io/collector modules at one release
# (v0.165.0 with pdata v1.71.0, agentpdp's own). Built into var/otelcol, and
# skipped when the binary of this release is there.
set -euo pipefail
cd "$(dirname "$0")/.."
release=v0.165.0
confmap=v1.71.0
dir=var/otelcol
# The binary's name carries this script's digest: a changed main rebuilds.
bin="$dir/otelcol-$release-$(sha256sum "$0" | cut -c1-12)"
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$dir/src"
cat >"$dir/src/main.go" <<'GO'
// Command otelcol is a minimal OpenTelemetry Collector for agentpdp's
// integration tests: the OTLP receiver and the OTLP/HTTP exporter.
package main

import (
	"log"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

func main() {
	set := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{Command: "otelcol", Description: "agentpdp test collector", Version: "test"},
		Factories: func() (otelcol.Factories, error) {
			f := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}
			var err error
			if f.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory()); err != nil {
				return f, err
			}
			f.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](otlphttpexporter.NewFactory())
			return f, err
		},
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory(), envprovider.NewFactory()},
				DefaultScheme:     "env",
			},
		},
	}
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		log.Fatal(err)
	}
}
GO
cd "$dir/src"
if [ ! -f go.mod ]; then
	go mod init agentpdp.test/otelcol >/dev/null
fi
GOFLAGS=-mod=mod go get \
	go.opentelemetry.io/collector/otelcol@$release \
	go.opentelemetry.io/collector/receiver/otlpreceiver@$release \
	go.opentelemetry.io/collector/exporter/otlphttpexporter@$release \
	go.opentelemetry.io/collector/service@$release \
	go.opentelemetry.io/collector/confmap/provider/fileprovider@$confmap \
	go.opentelemetry.io/collector/confmap/provider/envprovider@$confmap
go mod tidy
cd - >/dev/null
CGO_ENABLED=0 go -C "$dir/src" build -o "$PWD/$bin" .
echo "$bin"
