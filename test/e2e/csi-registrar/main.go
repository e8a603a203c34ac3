// Command csi-registrar registers a CSI driver with the kubelet, standing in for
// kubernetes-csi/node-driver-registrar in the real-node e2e suite (test/e2e): that project is
// not served by the Go module proxy (every version answers 403), so the suite cannot build it.
// This program is written for the suite; it accepts the flags manifests/csi/csi-driver.yaml
// passes to the real registrar and does the part of its job the kubelet depends on:
//
//  1. asks the CSI driver at -csi-address for its name (CSI Identity GetPluginInfo), retrying
//     until the driver listens;
//  2. serves the kubelet's plugin-registration gRPC service (pluginregistration.Registration)
//     on <-plugin-registration-path>/<name>-reg.sock, which the kubelet's plugin watcher finds:
//     GetInfo answers {type CSIPlugin, name, endpoint -kubelet-registration-path,
//     supported_versions ["1.0.0"]}; NotifyRegistrationStatus records the kubelet's verdict
//     and exits non-zero on a refusal, as the real registrar does, so the kubelet restarts it;
//  3. answers GET /healthz on -health-port: 200 while the registration socket exists and the
//     kubelet has not refused the plugin, 503 otherwise;
//  4. removes its registration socket on SIGTERM/SIGINT.
//
// Logs are JSON lines on stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	csi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registration "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

var (
	csiAddress       = flag.String("csi-address", "/run/csi/socket", "Path of the CSI driver's socket inside this container.")
	kubeletRegPath   = flag.String("kubelet-registration-path", "", "Path of the CSI driver's socket on the node, as the kubelet dials it.")
	pluginRegPath    = flag.String("plugin-registration-path", "/registration", "Directory of the kubelet's plugin registry inside this container.")
	healthPort       = flag.Int("health-port", 0, "TCP port of the /healthz endpoint (0: none).")
	connectTimeout   = flag.Duration("timeout", 5*time.Minute, "How long to wait for the CSI driver's socket.")
	registered       atomic.Bool
	refused          atomic.Bool
	registrationSock string
)

func logf(level, msg string, kv ...any) {
	m := map[string]any{"time": time.Now().UTC().Format(time.RFC3339Nano), "level": level, "msg": msg}
	for i := 0; i+1 < len(kv); i += 2 {
		m[fmt.Sprint(kv[i])] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	fmt.Fprintln(os.Stderr, string(b))
}

type registrationServer struct {
	registration.UnimplementedRegistrationServer
	driverName string
}

func (s *registrationServer) GetInfo(context.Context, *registration.InfoRequest) (*registration.PluginInfo, error) {
	logf("info", "kubelet asked for the plugin info", "driver", s.driverName, "endpoint", *kubeletRegPath)
	return &registration.PluginInfo{
		Type:              registration.CSIPlugin,
		Name:              s.driverName,
		Endpoint:          *kubeletRegPath,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (s *registrationServer) NotifyRegistrationStatus(_ context.Context, st *registration.RegistrationStatus) (*registration.RegistrationStatusResponse, error) {
	if !st.PluginRegistered {
		refused.Store(true)
		logf("error", "kubelet refused the plugin", "driver", s.driverName, "error", st.Error)
		// As node-driver-registrar: exit so that the kubelet restarts the container.
		go func() {
			time.Sleep(100 * time.Millisecond)
			os.Exit(1)
		}()
		return &registration.RegistrationStatusResponse{}, nil
	}
	registered.Store(true)
	logf("info", "kubelet registered the plugin", "driver", s.driverName)
	return &registration.RegistrationStatusResponse{}, nil
}

// driverName asks the CSI driver for its name, retrying until it answers or the timeout passes.
func driverName(ctx context.Context) (string, error) {
	conn, err := grpc.NewClient("unix://"+*csiAddress, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	client := csi.NewIdentityClient(conn)
	ctx, cancel := context.WithTimeout(ctx, *connectTimeout)
	defer cancel()
	for {
		callCtx, callCancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := client.GetPluginInfo(callCtx, &csi.GetPluginInfoRequest{})
		callCancel()
		if err == nil {
			if info.GetName() == "" {
				return "", errors.New("the CSI driver answered GetPluginInfo with an empty name")
			}
			return info.GetName(), nil
		}
		logf("info", "waiting for the CSI driver", "address", *csiAddress, "error", err.Error())
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no answer from the CSI driver at %s: %w", *csiAddress, err)
		case <-time.After(time.Second):
		}
	}
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	if _, err := os.Stat(registrationSock); err != nil {
		http.Error(w, fmt.Sprintf("registration socket: %v", err), http.StatusServiceUnavailable)
		return
	}
	if refused.Load() {
		http.Error(w, "the kubelet refused the plugin", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func main() {
	flag.Parse()
	if *kubeletRegPath == "" {
		logf("error", "-kubelet-registration-path is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	name, err := driverName(ctx)
	if err != nil {
		logf("error", "cannot reach the CSI driver", "error", err.Error())
		os.Exit(1)
	}
	registrationSock = filepath.Join(*pluginRegPath, name+"-reg.sock")
	if err := os.Remove(registrationSock); err != nil && !errors.Is(err, os.ErrNotExist) {
		logf("error", "cannot remove a stale registration socket", "path", registrationSock, "error", err.Error())
		os.Exit(1)
	}
	lis, err := net.Listen("unix", registrationSock)
	if err != nil {
		logf("error", "cannot listen on the registration socket", "path", registrationSock, "error", err.Error())
		os.Exit(1)
	}
	srv := grpc.NewServer()
	registration.RegisterRegistrationServer(srv, &registrationServer{driverName: name})
	go func() {
		if err := srv.Serve(lis); err != nil {
			logf("error", "registration server stopped", "error", err.Error())
		}
	}()
	logf("info", "serving the plugin registration", "driver", name, "socket", registrationSock, "endpoint", *kubeletRegPath)

	if *healthPort != 0 {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", healthz)
		hs := &http.Server{Addr: fmt.Sprintf(":%d", *healthPort), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logf("error", "health server stopped", "error", err.Error())
				os.Exit(1)
			}
		}()
	}

	<-ctx.Done()
	srv.Stop()
	_ = os.Remove(registrationSock)
	logf("info", "stopped; registration socket removed", "socket", registrationSock)
}
