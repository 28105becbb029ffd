// `hive-gpu bench`: build an index (flat, or an HNSW graph swept over ef) on a data set, then
// time batched k-NN searches against exact float64 ground truth.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "args.hpp"
#include "commands.hpp"
#include "datasets.hpp"
#include "format.hpp"
#include "ground_truth.hpp"
#include "hive_gpu/hive_gpu.hpp"
#include "progress.hpp"
#include "read_floor.hpp"
#include "timing.hpp"

namespace hive::gpu::tool {

namespace {

const std::vector<OptionSpec>& bench_options() {
  static const std::vector<OptionSpec> specs = {
      {"dataset", true, "fashion-mnist | random:N:D | clustered:N:D (default fashion-mnist)", "SPEC"},
      {"queries", true, "queries: synthetic default 1000; fashion-mnist: first NQ of its 10000", "NQ"},
      {"seed", true, "seed of the synthetic generators (default 42)", "S"},
      {"backend", true, "device for Context::open: auto, cpu, cuda, cuda:1, ... (default auto)", "NAME"},
      {"metric", true, "l2 | ip | cosine | l1 | linf (default l2)", "M"},
      {"storage", true, "f32 | f16 | bf16 (default f32)", "T"},
      {"k", true, "neighbours per query (default 10)", "K"},
      {"index", true, "flat | hnsw | graph (default flat; hnsw runs on the CPU, graph on a GPU: CUDA or HIP)", "KIND"},
      {"M", true, "hnsw: links per node (default 16)", "M"},
      {"ef-construction", true, "hnsw: the build's candidate list (default 200)", "EF"},
      {"ef", true, "hnsw: comma-separated search candidate lists to sweep (default 10,16,20,32,40,64,80,128)", "LIST"},
      {"itopk", true, "graph: comma-separated search lists (powers of two, 16..1024) to sweep (default 16,32,64,128)", "LIST"},
      {"search-width", true, "graph: list entries expanded per step, 1..4 (default 1)", "W"},
      {"graph-degree", true, "graph: links per node (default 32)", "D"},
      {"batch", true, "comma-separated batch sizes to time (default 1,100,10000)", "LIST"},
      {"b1-queries", true, "queries timed at batch size 1 (default 1000)", "N"},
      {"time-budget", true, "seconds after which a batch size stops starting new batches (default 20)", "S"},
      {"repeat", true, "passes over the timed queries, at least (default 1)", "R"},
      {"min-time", true, "add passes until this many seconds of search are timed (default 0)", "S"},
      {"json", true, "also write the results as JSON to FILE", "FILE"},
      {"data-dir", true, "ground-truth cache folder (default $HIVE_GPU_DATA_DIR or ./data)", "DIR"},
      {"dump-dir", true, "write base/queries/ground truth as .npy for bench/peers.py", "DIR"},
      {"no-cache", false, "recompute the ground truth even when a cached copy matches", ""},
      {"no-floor", false, "skip the read-floor measurement", ""},
      {"no-progress", false, "no progress bars on stderr", ""},
      {"help", false, "show this help", ""},
  };
  return specs;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The 1-minute load average (Linux), -1 where unknown: recorded so that results taken on a
// busy machine can be recognised as such.
double load_average() {
  std::ifstream f("/proc/loadavg");
  double v = -1;
  if (!(f >> v)) return -1;
  return v;
}

std::string default_data_dir() {
  const char* env = std::getenv("HIVE_GPU_DATA_DIR");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string("./data");
}

struct Row {
  BatchTiming timing;
  double recall = 0;
  int ef = 0;  // hnsw: the search candidate list (0: flat)
};

void write_json(const std::string& path, const DeviceInfo& dev, const Dataset& ds, Metric metric, ScalarType storage,
                int k, int k_gt, double load_s, double build_s, double gt_s, bool gt_cached, const ReadFloor* floor,
                const BatchPlan& plan_defaults, std::size_t b1_queries, const std::vector<Row>& rows,
                double load_start, double load_end) {
  std::ofstream os(path);
  if (!os) throw std::runtime_error("cannot write " + path);
  JsonWriter j(os);
  j.begin_object();
  j.field("tool", "hive-gpu bench").field("version", kVersionString);
  j.field("engine", "hive-gpu");
  j.field("device", dev.name).field("device_id", dev.id()).field("backend", dev.backend);
  j.field("simd", dev.simd).field("compute_units", dev.compute_units);
  j.field("dataset", ds.name).field("seed", ds.seed);
  j.field("n", static_cast<uint64_t>(ds.n)).field("d", static_cast<uint64_t>(ds.d));
  j.field("nq", static_cast<uint64_t>(ds.nq));
  j.field("metric", to_string(metric)).field("storage", to_string(storage));
  j.field("k", k).field("k_gt", k_gt);
  j.field("load_s", load_s).field("build_s", build_s).field("gt_s", gt_s).field("gt_cached", gt_cached);
  j.field("threads", static_cast<int64_t>(std::thread::hardware_concurrency()));
  j.key("loadavg").begin_array().value(load_start).value(load_end).end_array();
  if (floor != nullptr) {
    j.field("floor_ms", floor->best_ms).field("floor_bytes", static_cast<uint64_t>(floor->bytes));
    j.field("floor_gbps", floor->gbps).field("floor_threads", static_cast<int64_t>(floor->threads));
  } else {
    j.key("floor_ms").null();
  }
  j.key("settings").begin_object();
  j.field("time_budget_s", plan_defaults.time_budget_s).field("repeat", plan_defaults.repeat);
  j.field("min_time_s", plan_defaults.min_time_s).field("b1_queries", static_cast<uint64_t>(b1_queries));
  j.end_object();
  j.key("rows").begin_array();
  for (const auto& r : rows) {
    const auto& t = r.timing;
    j.begin_object()
        .field("batch", static_cast<uint64_t>(t.batch))
        .field("queries", static_cast<uint64_t>(t.queries))
        .field("batches", static_cast<uint64_t>(t.batches))
        .field("passes", t.passes)
        .field("total_s", t.total_s)
        .field("qps", t.qps)
        .field("p50_ms", t.p50_ms)
        .field("p99_ms", t.p99_ms)
        .field("mean_ms", t.mean_ms)
        .field("max_ms", t.max_ms)
        .field("recall", r.recall)
        .field("ef", r.ef)
        .end_object();
  }
  j.end_array();
  j.end_object();
  if (!os.flush()) throw std::runtime_error("cannot write " + path);
}

void dump_for_peers(const std::string& dir, const Dataset& ds, const GroundTruth& gt, Metric metric, int k) {
  std::filesystem::create_directories(dir);
  write_npy(dir + "/base.npy", ds.base.data(), ds.n, ds.d);
  write_npy(dir + "/queries.npy", ds.queries.data(), ds.nq, ds.d);
  write_npy(dir + "/gt_ids.npy", gt.ids.data(), gt.nq, static_cast<std::size_t>(gt.k));
  write_npy(dir + "/gt_dist.npy", gt.distances.data(), gt.nq, static_cast<std::size_t>(gt.k));
  std::ofstream os(dir + "/meta.json");
  JsonWriter j(os);
  j.begin_object()
      .field("dataset", ds.name)
      .field("seed", ds.seed)
      .field("n", static_cast<uint64_t>(ds.n))
      .field("d", static_cast<uint64_t>(ds.d))
      .field("nq", static_cast<uint64_t>(ds.nq))
      .field("metric", to_string(metric))
      .field("k", k)
      .field("k_gt", gt.k)
      .end_object();
  if (!os.flush()) throw std::runtime_error("cannot write " + dir + "/meta.json");
}

}  // namespace

int run_bench(int argc, const char* const* argv, int first) {
  Args args(bench_options(), argc, argv, first);
  if (args.has("help")) {
    std::cout << "usage: hive-gpu bench [options]\n\nBuilds an index (flat, hnsw swept over --ef, or graph over --itopk) on a data set, "
                 "then times k-NN searches "
                 "in batches\nand reports QPS, per-batch p50/p99 latency and tie-aware recall@k against\nexact "
                 "float64 ground truth (cached under the data folder).\n\n"
              << format_options(bench_options());
    return 0;
  }
  const DatasetSpec spec = parse_dataset_spec(args.get("dataset", "fashion-mnist"));
  const bool synthetic = spec.kind != "fashion-mnist";
  const std::size_t nq_opt = args.get_size("queries", synthetic ? 1000 : 0);
  if (synthetic && nq_opt == 0) throw UsageError("--queries must be positive");
  const auto seed = static_cast<uint64_t>(args.get_int("seed", 42));
  const std::string backend = args.get("backend", "auto");
  const Metric metric = parse_metric(args.get("metric", "l2"));
  if (metric == Metric::Hamming) throw UsageError("--metric hamming is not supported by the benchmark (float data)");
  const ScalarType storage = parse_scalar_type(args.get("storage", "f32"));
  if (storage == ScalarType::Bits) throw UsageError("--storage must be f32, f16 or bf16");
  const int64_t k64 = args.get_int("k", 10);
  if (k64 <= 0 || k64 > kMaxK) throw UsageError("--k must be in 1.." + std::to_string(kMaxK));
  const int k = static_cast<int>(k64);
  const std::vector<std::size_t> batches = parse_size_list(args.get("batch", "1,100,10000"), "--batch");
  const std::size_t b1_queries = args.get_size("b1-queries", 1000);
  BatchPlan plan_defaults;
  plan_defaults.time_budget_s = args.get_double("time-budget", 20);
  plan_defaults.repeat = static_cast<int>(args.get_int("repeat", 1));
  plan_defaults.min_time_s = args.get_double("min-time", 0);
  if (plan_defaults.repeat < 1) throw UsageError("--repeat must be at least 1");
  const std::string kind = args.get("index", "flat");
  if (kind != "flat" && kind != "hnsw" && kind != "graph") throw UsageError("--index must be flat, hnsw or graph");
  HnswOptions hopt;
  hopt.M = static_cast<int>(args.get_int("M", 16));
  hopt.ef_construction = static_cast<int>(args.get_int("ef-construction", 200));
  hopt.storage = storage;
  std::vector<int> efs = {0};
  if (kind == "hnsw") {
    efs.clear();
    for (std::size_t e : parse_size_list(args.get("ef", "10,16,20,32,40,64,80,128"), "--ef")) efs.push_back(int(e));
  }
  GraphOptions gopt;
  gopt.graph_degree = static_cast<int>(args.get_int("graph-degree", 32));
  gopt.intermediate_degree = std::max(64, gopt.graph_degree);
  gopt.search.search_width = static_cast<int>(args.get_int("search-width", 1));
  if (kind == "graph") {
    efs.clear();
    for (std::size_t e : parse_size_list(args.get("itopk", "16,32,64,128"), "--itopk")) efs.push_back(int(e));
  }
  const std::string data_dir = args.get("data-dir", default_data_dir());
  const bool progress = !args.has("no-progress");

  // Data.
  std::cerr << "loading " << args.get("dataset", "fashion-mnist") << " ...\n";
  auto t0 = std::chrono::steady_clock::now();
  Dataset ds = load_dataset(spec, nq_opt, seed, fashion_mnist_dir());
  const double load_s = seconds_since(t0);

  // Device and index.
  Context ctx = Context::open(kind == "hnsw" && backend == "auto" ? "cpu" : backend);
  const DeviceInfo& dev = ctx.info();
  std::unique_ptr<Index> owned;
  HnswIndex* graph = nullptr;
  GraphIndex* gpu_graph = nullptr;
  if (kind == "graph") {
    auto g = std::make_unique<GraphIndex>(ctx, ds.d, metric, gopt);
    gpu_graph = g.get();
    owned = std::move(g);
  } else if (kind == "hnsw") {
    auto h = std::make_unique<HnswIndex>(ctx, ds.d, metric, hopt);
    graph = h.get();
    owned = std::move(h);
  } else {
    owned = std::make_unique<FlatIndex>(ctx, ds.d, metric, FlatOptions{storage});
  }
  Index& index = *owned;
  t0 = std::chrono::steady_clock::now();
  {
    Progress bar("build", ds.n, "rows", progress);
    index.reserve(ds.n);
    // A graph is inserted in one call (every thread of the pool works on it); a flat index in
    // chunks, so the progress bar moves.
    const std::size_t chunk = graph != nullptr || gpu_graph != nullptr ? ds.n : 8192;
    for (std::size_t r = 0; r < ds.n; r += chunk) {
      const std::size_t cnt = std::min(chunk, ds.n - r);
      index.add(cnt, ds.base.data() + r * ds.d);
      bar.update(r + cnt);
    }
  }
  const double build_s = seconds_since(t0);

  // Ground truth.
  const int k_gt = ground_truth_k(k);
  GtKey key;
  key.dataset = ds.name;
  key.seed = ds.seed;
  key.n = ds.n;
  key.d = ds.d;
  key.nq = ds.nq;
  key.metric = metric;
  key.k = k_gt;
  key.data_hash = fingerprint(ds.queries.data(), ds.queries.size(), fingerprint(ds.base.data(), ds.base.size()));
  const std::string gt_path = ground_truth_cache_path(data_dir, key);
  t0 = std::chrono::steady_clock::now();
  std::optional<GroundTruth> cached;
  if (!args.has("no-cache")) cached = load_ground_truth(gt_path, key);
  const bool gt_cached = cached.has_value();
  GroundTruth gt;
  if (gt_cached) {
    gt = std::move(*cached);
  } else {
    std::cerr << "computing exact ground truth (" << ds.nq << " queries x " << ds.n << " rows, k=" << k_gt
              << (ground_truth_uses_blas() ? ", OpenBLAS dgemm" : ", plain loops") << ") ...\n";
    Progress bar("ground truth", ds.n, "rows", progress);
    gt = compute_ground_truth(ds.base.data(), ds.n, ds.queries.data(), ds.nq, ds.d, metric, k_gt, 0,
                              [&bar](uint64_t done, uint64_t) { bar.update(done); });
    bar.finish();
    try {
      save_ground_truth(gt_path, key, gt);
    } catch (const std::exception& e) {
      std::cerr << "warning: ground truth not cached: " << e.what() << '\n';
    }
  }
  const double gt_s = seconds_since(t0);
  if (args.has("dump-dir")) dump_for_peers(args.get("dump-dir", ""), ds, gt, metric, k);

  // Timed searches.
  const double load_start = load_average();
  std::vector<Row> rows;
  for (int ef : efs) {
    if (graph != nullptr) graph->set_ef_search(ef);
    if (gpu_graph != nullptr) {
      GraphSearchParams p = gopt.search;
      p.itopk = ef;
      gpu_graph->set_search_params(p);
    }
    for (std::size_t b : batches) {
      BatchPlan plan = plan_defaults;
      plan.batch = b;
      plan.queries = b == 1 ? std::min(ds.nq, b1_queries) : ds.nq;
      std::cerr << "timing batch " << b << (ef > 0 ? " ef " + std::to_string(ef) : std::string()) << " ...\n";
      Row row;
      row.ef = ef;
      row.timing = time_batches(index, ds.queries.data(), ds.d, k, plan);
      row.recall = recall_at_k(metric, k, ds.base.data(), ds.n, ds.queries.data(), ds.d, gt, 0, row.timing.queries,
                               row.timing.ids.data());
      rows.push_back(std::move(row));
    }
  }

  const double load_end = load_average();
  std::optional<ReadFloor> floor;
  if (!args.has("no-floor")) {
    floor = measure_read_floor(ds.n * row_bytes(storage, ds.d));
  }

  // Report.
  std::cout << "device " << dev.id() << " (" << dev.name << (dev.simd.empty() ? "" : ", " + dev.simd) << ", "
            << dev.compute_units << " units) | dataset " << ds.name << " | n " << ds.n << " | d " << ds.d << " | nq "
            << ds.nq << " | metric " << to_string(metric) << " | storage " << to_string(storage) << " | k " << k
            << " | index " << kind
            << (graph != nullptr ? " (M " + std::to_string(hopt.M) + ", ef_construction " +
                                       std::to_string(hopt.ef_construction) + ")"
                                 : std::string())
            << (gpu_graph != nullptr ? " (degree " + std::to_string(gopt.graph_degree) + ", search width " +
                                           std::to_string(gopt.search.search_width) + "; ef = itopk)"
                                     : std::string())
            << '\n';
  std::cout << "build " << fixed(build_s, 3) << " s (" << short_count(double(ds.n) / std::max(build_s, 1e-9))
            << " rows/s) | ground truth " << (gt_cached ? "cached" : "computed in " + fixed(gt_s, 1) + " s") << "\n\n";
  Table table;
  if (graph != nullptr) table.add_column("ef", Table::Align::Right);
  table.add_column("batch", Table::Align::Right);
  table.add_column("QPS", Table::Align::Right);
  table.add_column("p50 ms", Table::Align::Right);
  table.add_column("p99 ms", Table::Align::Right);
  table.add_column("recall@" + std::to_string(k), Table::Align::Right);
  for (const auto& r : rows) {
    std::vector<std::string> cells = {std::to_string(r.timing.batch), sig3(r.timing.qps), sig3(r.timing.p50_ms),
                                      sig3(r.timing.p99_ms), fixed(r.recall, 4)};
    if (graph != nullptr) cells.insert(cells.begin(), std::to_string(r.ef));
    table.add_row(cells);
  }
  std::cout << table.markdown();
  if (floor) {
    std::cout << "\nread floor: " << fixed(double(floor->bytes) / 1e6, 1) << " MB streamed in "
              << fixed(floor->best_ms, 3) << " ms (" << fixed(floor->gbps, 1) << " GB/s, " << floor->threads
              << " threads, best of " << floor->runs << ")\n";
  }
  if (args.has("json")) {
    write_json(args.get("json", ""), dev, ds, metric, storage, k, k_gt, load_s, build_s, gt_s, gt_cached,
               floor ? &*floor : nullptr, plan_defaults, b1_queries, rows, load_start, load_end);
  }
  return 0;
}

}  // namespace hive::gpu::tool
