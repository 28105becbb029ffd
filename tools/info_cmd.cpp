// `hive-gpu info`: every backend this build knows and every device present.
#include <iostream>
#include <vector>

#include "args.hpp"
#include "commands.hpp"
#include "format.hpp"
#include "hive_gpu/hive_gpu.hpp"

namespace hive::gpu::tool {

namespace {

const std::vector<OptionSpec>& info_options() {
  static const std::vector<OptionSpec> specs = {
      {"json", false, "print JSON instead of tables", ""},
      {"help", false, "show this help", ""},
  };
  return specs;
}

std::string compute_capability(const DeviceInfo& d) {
  if (d.compute_major == 0 && d.compute_minor == 0) return "-";
  return std::to_string(d.compute_major) + "." + std::to_string(d.compute_minor);
}

std::string simd_subgroup(const DeviceInfo& d) {
  std::string s = d.simd;
  if (d.subgroup_size > 0) s += (s.empty() ? "" : " / ") + std::to_string(d.subgroup_size);
  return s.empty() ? "-" : s;
}

std::string or_dash(const std::string& s) { return s.empty() ? "-" : s; }

void print_json(const std::vector<BackendStatus>& backends, const std::vector<DeviceInfo>& devices) {
  JsonWriter j(std::cout);
  j.begin_object();
  j.field("version", kVersionString);
  j.key("backends").begin_array();
  for (const auto& b : backends) {
    j.begin_object()
        .field("name", b.name)
        .field("compiled", b.compiled)
        .field("available", b.available)
        .field("device_count", b.device_count)
        .field("reason", b.reason)
        .end_object();
  }
  j.end_array();
  j.key("devices").begin_array();
  for (const auto& d : devices) {
    j.begin_object()
        .field("id", d.id())
        .field("backend", d.backend)
        .field("ordinal", d.ordinal)
        .field("vendor", d.vendor)
        .field("name", d.name)
        .field("architecture", d.architecture)
        .field("compute_major", d.compute_major)
        .field("compute_minor", d.compute_minor)
        .field("compute_units", d.compute_units)
        .field("subgroup_size", d.subgroup_size)
        .field("device_type", d.device_type)
        .field("simd", d.simd)
        .field("total_memory", d.total_memory)
        .field("free_memory", d.free_memory)
        .field("memory_usage_percent", d.memory_usage_percent())
        .field("driver_version", d.driver_version)
        .field("runtime_version", d.runtime_version)
        .field("pci_bus_id", d.pci_bus_id)
        .end_object();
  }
  j.end_array();
  j.end_object();
}

void print_tables(const std::vector<BackendStatus>& backends, const std::vector<DeviceInfo>& devices) {
  std::cout << "hive-gpu " << kVersionString << "\n\nBackends\n\n";
  Table bt;
  bt.add_column("backend");
  bt.add_column("compiled");
  bt.add_column("available");
  bt.add_column("devices", Table::Align::Right);
  bt.add_column("reason");
  for (const auto& b : backends) {
    bt.add_row({b.name, b.compiled ? "yes" : "no", b.available ? "yes" : "no", std::to_string(b.device_count),
                or_dash(b.reason)});
  }
  std::cout << bt.markdown() << "\nDevices\n\n";
  Table dt;
  dt.add_column("id");
  dt.add_column("vendor");
  dt.add_column("name");
  dt.add_column("architecture");
  dt.add_column("compute");
  dt.add_column("units", Table::Align::Right);
  dt.add_column("SIMD / subgroup");
  dt.add_column("total GiB", Table::Align::Right);
  dt.add_column("free GiB", Table::Align::Right);
  dt.add_column("used %", Table::Align::Right);
  dt.add_column("driver");
  dt.add_column("PCI bus");
  dt.add_column("runtime");
  for (const auto& d : devices) {
    dt.add_row({d.id(), or_dash(d.vendor), or_dash(d.name), or_dash(d.architecture), compute_capability(d),
                std::to_string(d.compute_units), simd_subgroup(d), gib(d.total_memory), gib(d.free_memory),
                fixed(d.memory_usage_percent(), 1), or_dash(d.driver_version), or_dash(d.pci_bus_id),
                or_dash(d.runtime_version)});
  }
  std::cout << dt.markdown();
}

}  // namespace

int run_info(int argc, const char* const* argv, int first) {
  Args args(info_options(), argc, argv, first);
  if (args.has("help")) {
    std::cout << "usage: hive-gpu info [--json]\n\nLists every backend this build knows (compiled in or not, "
                 "devices found) and every device present.\n\n"
              << format_options(info_options());
    return 0;
  }
  const auto backends = Context::backends();
  const auto devices = Context::devices();
  if (args.has("json")) {
    print_json(backends, devices);
  } else {
    print_tables(backends, devices);
  }
  return 0;
}

}  // namespace hive::gpu::tool
