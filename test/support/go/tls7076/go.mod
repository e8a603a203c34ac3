module tls7076

go 1.26
