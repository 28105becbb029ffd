// hive-gpu command: markdown tables, hand-written JSON and number formatting.
#pragma once
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace hive::gpu::tool {

// A markdown table whose cells are padded so it also reads well in a terminal.
class Table {
 public:
  enum class Align { Left, Right };
  void add_column(std::string header, Align align = Align::Left);
  void add_row(std::vector<std::string> cells);  // short rows are padded with empty cells
  std::string markdown() const;
  std::size_t rows() const { return rows_.size(); }

 private:
  std::vector<std::string> headers_;
  std::vector<Align> aligns_;
  std::vector<std::vector<std::string>> rows_;
};

// JSON string literal contents for s (quotes not included): escapes ", \ and control chars.
std::string json_escape(std::string_view s);

// A streaming JSON writer with two-space indentation. Non-finite doubles are written as null.
class JsonWriter {
 public:
  explicit JsonWriter(std::ostream& os) : os_(os) {}
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  JsonWriter& key(std::string_view k);
  JsonWriter& value(std::string_view s);
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  JsonWriter& value(double v);
  JsonWriter& value(int64_t v);
  JsonWriter& value(uint64_t v);
  JsonWriter& value(int v) { return value(static_cast<int64_t>(v)); }
  JsonWriter& value(bool v);
  JsonWriter& null();
  template <class T>
  JsonWriter& field(std::string_view k, const T& v) {
    key(k);
    return value(v);
  }

 private:
  void before_value();
  void newline();
  std::ostream& os_;
  struct Level {
    bool array;
    bool empty;
  };
  std::vector<Level> stack_;
  bool after_key_ = false;
};

// Shortest round-trip text for v ("0.1", "1e-07"); "null" when not finite.
std::string json_number(double v);
// Fixed-point with `digits` decimals, e.g. fixed(3.14159, 2) == "3.14".
std::string fixed(double v, int digits);
// Three significant digits with thousands kept whole: 123456 -> "123456", 12.34 -> "12.3".
std::string sig3(double v);
// Bytes as GiB with two decimals.
std::string gib(uint64_t bytes);

}  // namespace hive::gpu::tool
