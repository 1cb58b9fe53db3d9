{
  "targets": [
    {
      "target_name": "braid_native",
      "sources": [
        "src/addon.cc",
        "src/errors.cc",
        "src/sockets.cc",
        "src/transparent.cc",
        "src/tcpstate.cc", "src/sockdiag.cc",
        "src/info.cc",
        "src/rlimit.cc",
        "src/netlink.cc",
        "src/nlwatch.cc",
        "src/pm.cc",
        "src/pm_userspace.cc",
        "src/rtnl.cc",
        "src/netlink_exports.cc",
        "src/datapath.cc",
        "src/splice.cc",
        "src/pump_loop.cc",
        "src/seal.cc",
        "src/open.cc",
        "src/record_stream.cc",
        "src/tls_records.cc",
        "src/pump_args.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "conditions": [
        ["OS!='linux'", { "sources!": ["src/sockets.cc", "src/transparent.cc", "src/tcpstate.cc", "src/sockdiag.cc", "src/info.cc", "src/netlink.cc", "src/nlwatch.cc", "src/pm.cc", "src/pm_userspace.cc", "src/rtnl.cc", "src/netlink_exports.cc"], "sources": ["src/unsupported.cc", "src/netlink_unsupported.cc"] }]
      ]
    }
  ]
}
