// Training utilities (ctgraph/train.hpp): batches (sizes, coverage, determinism pinned to fixed
// orders, resuming), the CSV metrics log (content, quoting, appending, errors), the progress bar's
// text from a fake clock, and plots: the gnuplot scripts' text, a missing or failing gnuplot, and
// real images when gnuplot is installed.
#include <stdlib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <ctgraph/train.hpp>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace cg = ctgraph;
namespace fs = std::filesystem;

namespace {
// A fresh directory per test case, removed at the end.
struct temp_dir {
  fs::path dir;
  temp_dir() {
    std::string t = (fs::temp_directory_path() / "ctgraph_train_XXXXXX").string();
    REQUIRE(mkdtemp(t.data()) != nullptr);
    dir = t;
  }
  ~temp_dir() { fs::remove_all(dir); }
  fs::path operator/(const char* name) const { return dir / name; }
};

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void write_file(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

std::vector<std::size_t> vec(std::span<const std::size_t> s) { return {s.begin(), s.end()}; }

// Everything written to a temporary FILE* so far.
std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
  std::fseek(f, 0, SEEK_END);  // a write may follow a read only after a seek
  return s;
}
struct temp_stream {
  std::FILE* f = std::tmpfile();
  temp_stream() { REQUIRE(f != nullptr); }
  ~temp_stream() { std::fclose(f); }
  std::string text() const { return contents(f); }
};
}  // namespace

// ---- batches ----

TEST_CASE("batches: sizes and the remainder, dropped or wrapped") {
  cg::batches even(12, 4);
  CHECK(even.examples() == 12);
  CHECK(even.batch_size() == 4);
  CHECK(even.per_epoch() == 3);
  cg::batches drop(10, 4, {.seed = 1});
  CHECK(drop.per_epoch() == 2);  // 2 examples of each epoch are left out
  cg::batches wrap(10, 4, {.seed = 1, .rest = cg::remainder::wrap});
  CHECK(wrap.per_epoch() == 3);  // the third batch takes 2 examples twice
  cg::batches whole(10, 10);
  CHECK(whole.per_epoch() == 1);
  for (cg::batches* b : {&even, &drop, &wrap, &whole})
    for (std::size_t i = 0; i < b->per_epoch(); ++i) CHECK(b->indices(5, i).size() == b->batch_size());
}

TEST_CASE("batches: every example once per epoch when the size divides the data set") {
  cg::batches b(12, 4, {.seed = 3});
  for (std::uint64_t epoch = 0; epoch < 5; ++epoch) {
    std::vector<std::size_t> seen;
    for (std::size_t i = 0; i < b.per_epoch(); ++i)
      for (std::size_t k : b.indices(epoch, i)) seen.push_back(k);
    std::sort(seen.begin(), seen.end());
    std::vector<std::size_t> all(12);
    for (std::size_t k = 0; k < all.size(); ++k) all[k] = k;
    CHECK(seen == all);
  }
}

TEST_CASE("batches: a dropped remainder leaves out the end of each epoch's order, a wrapped one repeats its head") {
  cg::batches drop(10, 4, {.seed = 5});
  for (std::uint64_t epoch = 0; epoch < 4; ++epoch) {
    const std::vector<std::size_t> order = vec(drop.order(epoch));
    std::vector<std::size_t> seen;
    for (std::size_t i = 0; i < drop.per_epoch(); ++i)
      for (std::size_t k : drop.indices(epoch, i)) seen.push_back(k);
    CHECK(seen == std::vector<std::size_t>(order.begin(), order.begin() + 8));
    CHECK(std::set<std::size_t>(seen.begin(), seen.end()).size() == 8);  // none twice
  }
  cg::batches wrap(10, 4, {.seed = 5, .rest = cg::remainder::wrap});
  for (std::uint64_t epoch = 0; epoch < 4; ++epoch) {
    const std::vector<std::size_t> order = vec(wrap.order(epoch));
    std::vector<std::size_t> seen;
    for (std::size_t i = 0; i < wrap.per_epoch(); ++i)
      for (std::size_t k : wrap.indices(epoch, i)) seen.push_back(k);
    std::vector<std::size_t> want = order;
    want.push_back(order[0]);
    want.push_back(order[1]);
    CHECK(seen == want);  // every example, and the first two of the order again
  }
  // The order of an epoch is a permutation either way, and the same for both.
  std::vector<std::size_t> sorted = vec(wrap.order(2));
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == std::vector<std::size_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(vec(wrap.order(2)) == vec(drop.order(2)));
}

TEST_CASE("batches: the same seed gives the same batches, pinned to fixed orders") {
  // These orders follow from the C++ standard alone (std::mt19937_64 and the documented
  // draws): they are the same on every platform, and must stay so, or resumed runs change.
  cg::batches b(10, 4, {.seed = 7});
  CHECK(vec(b.order(0)) == std::vector<std::size_t>{7, 8, 0, 4, 1, 6, 9, 5, 2, 3});
  CHECK(vec(b.order(1)) == std::vector<std::size_t>{1, 9, 7, 8, 0, 3, 4, 2, 5, 6});
  cg::batches wrap(10, 4, {.seed = 7, .rest = cg::remainder::wrap});
  CHECK(vec(wrap.indices(0, 2)) == std::vector<std::size_t>{2, 3, 7, 8});
  cg::batches again(10, 4, {.seed = 7});
  for (std::uint64_t epoch = 0; epoch < 20; ++epoch)
    for (std::size_t i = 0; i < b.per_epoch(); ++i) CHECK(vec(b.indices(epoch, i)) == vec(again.indices(epoch, i)));
}

TEST_CASE("batches: different seeds and different epochs give different orders") {
  cg::batches a(100, 10, {.seed = 1}), b(100, 10, {.seed = 2});
  CHECK(vec(a.order(0)) != vec(b.order(0)));
  CHECK(vec(a.order(0)) != vec(a.order(1)));
  // Seeds 0 and 1 with epochs 1 and 0: the (seed, epoch) mix keeps them apart.
  cg::batches z(100, 10, {.seed = 0});
  CHECK(vec(z.order(1)) != vec(a.order(0)));
  // Without shuffle, every epoch is in order.
  cg::batches in_order(6, 3, {.seed = 9, .shuffle = false});
  CHECK(vec(in_order.indices(4, 1)) == std::vector<std::size_t>{3, 4, 5});
}

TEST_CASE("batches: each example is about as likely at each place") {
  // 6000 epochs of 6 examples: each example lands first about 1000 times (a biased draw, like a
  // sort by random keys with ties, would show here).
  cg::batches b(6, 1, {.seed = 11});
  std::map<std::size_t, int> first, last;
  for (std::uint64_t epoch = 0; epoch < 6000; ++epoch) {
    ++first[b.order(epoch)[0]];
    ++last[b.order(epoch)[5]];
  }
  for (std::size_t k = 0; k < 6; ++k) {
    INFO("example " << k);
    CHECK(std::abs(first[k] - 1000) < 120);
    CHECK(std::abs(last[k] - 1000) < 120);
  }
}

TEST_CASE("batches: a resumed run gets the same batches, at(step) or by (epoch, index)") {
  cg::batches straight(10, 3, {.seed = 4, .rest = cg::remainder::wrap});
  std::vector<std::vector<std::size_t>> all;
  for (std::uint64_t epoch = 0; epoch < 3; ++epoch)
    for (std::size_t i = 0; i < straight.per_epoch(); ++i) all.push_back(vec(straight.indices(epoch, i)));
  REQUIRE(all.size() == 12);
  // A fresh batcher, as after a restart, asked from step 5 on: the same batches.
  cg::batches resumed(10, 3, {.seed = 4, .rest = cg::remainder::wrap});
  for (std::uint64_t step = 5; step < 12; ++step) CHECK(vec(resumed.at(step)) == all[step]);
  // The order of the calls does not matter: epoch 2, then epoch 0.
  cg::batches jumping(10, 3, {.seed = 4, .rest = cg::remainder::wrap});
  CHECK(vec(jumping.indices(2, 1)) == all[9]);
  CHECK(vec(jumping.indices(0, 3)) == all[3]);
}

TEST_CASE("batches: the shards of N ranks are, in rank order, the batch of one rank") {
  cg::batches one(24, 6, {.seed = 9});
  for (const int ranks : {1, 2, 3, 6}) {
    cg::batches each(24, 6, {.seed = 9});             // a rank's own batcher, made with the same seed
    for (std::uint64_t step = 0; step < 9; ++step) {  // over two epochs and a bit
      std::vector<std::size_t> joined;
      for (int r = 0; r < ranks; ++r) {
        const auto part = vec(each.shard_at(step, r, ranks));
        CHECK(part.size() == 6u / static_cast<std::size_t>(ranks));
        joined.insert(joined.end(), part.begin(), part.end());
      }
      CHECK(joined == vec(one.at(step)));
    }
  }
  // Rank 1 of 2, batch 1 of epoch 0: the second half of that batch.
  const auto batch = vec(one.indices(0, 1));
  CHECK(vec(one.shard(0, 1, 1, 2)) == std::vector<std::size_t>(batch.begin() + 3, batch.end()));
  CHECK_THROWS_WITH(one.shard(0, 0, 0, 4), Catch::Contains("4 ranks do not divide the batch of 6 examples"));
  CHECK_THROWS_WITH(one.shard(0, 0, 2, 2), Catch::Contains("rank 2 of 2 ranks"));
  CHECK_THROWS_AS(one.shard(0, 4, 0, 2), std::out_of_range);
}

TEST_CASE("batches: bad sizes and indices are errors") {
  CHECK_THROWS_AS(cg::batches(10, 0), std::invalid_argument);
  CHECK_THROWS_WITH(cg::batches(10, 0), Catch::Contains("batch size 0"));
  CHECK_THROWS_WITH(cg::batches(10, 11), Catch::Contains("batch size 11 is larger than the data set (10 examples)"));
  CHECK_THROWS_AS(cg::batches(0, 1), std::invalid_argument);
  cg::batches b(10, 4);
  CHECK_THROWS_AS(b.indices(0, 2), std::out_of_range);
  CHECK_THROWS_WITH(b.indices(0, 2), Catch::Contains("batch 2 of an epoch of 2"));
}

TEST_CASE("gather_rows: copies the rows of a batch, checks sizes and indices") {
  const std::vector<float> xs = {0, 1, 10, 11, 20, 21, 30, 31};  // 4 rows of 2
  const std::vector<int> ys = {5, 6, 7, 8};
  const std::vector<std::size_t> idx = {3, 0, 3};
  std::vector<float> xb(6);
  std::vector<int> yb(3);
  cg::gather_rows(xs, 2, idx, xb);
  cg::gather_rows(ys, 1, idx, yb);
  CHECK(xb == std::vector<float>{30, 31, 0, 1, 30, 31});
  CHECK(yb == std::vector<int>{8, 5, 8});

  std::vector<float> wrong(5, -1.f);
  CHECK_THROWS_WITH(cg::gather_rows(xs, 2, idx, wrong),
                    Catch::Contains("the output has 5 elements, 3 rows of 2 need 6"));
  CHECK_THROWS_WITH(cg::gather_rows(xs, 3, idx, xb), Catch::Contains("8 elements are not a whole number of rows of 3"));
  CHECK_THROWS_WITH(cg::gather_rows(xs, 0, idx, xb), Catch::Contains("row size 0"));
  const std::vector<std::size_t> past = {1, 4, 0};
  std::vector<float> untouched(6, -1.f);
  CHECK_THROWS_WITH(cg::gather_rows(xs, 2, past, untouched), Catch::Contains("index 4 is past the data's 4 rows"));
  CHECK(untouched == std::vector<float>(6, -1.f));  // checked before any copy
}

// ---- metrics_log ----

TEST_CASE("metrics_log: a header, then one row per write, numbers as written") {
  temp_dir d;
  {
    cg::metrics_log log(d / "m.csv", {"epoch", "loss", "acc", "note"});
    CHECK(read_file(d / "m.csv") == "epoch,loss,acc,note\n");  // the header is there at once
    log.write({1, 0.123456789012, 0.5f, "first"});
    log.write({2L, 1.0 / 3, 2.0, std::string("a, b")});
    CHECK(read_file(d / "m.csv") ==  // each row flushed as written
          "epoch,loss,acc,note\n"
          "1,0.123456789,0.5,first\n"
          "2,0.333333333,2,\"a, b\"\n");
    log.write({3, std::nan(""), std::numeric_limits<double>::infinity(), "say \"hi\"\nbye"});
    log.write({true, -std::numeric_limits<float>::infinity(), -std::nanf(""), ""});
  }
  CHECK(read_file(d / "m.csv") ==
        "epoch,loss,acc,note\n"
        "1,0.123456789,0.5,first\n"
        "2,0.333333333,2,\"a, b\"\n"
        "3,nan,inf,\"say \"\"hi\"\"\nbye\"\n"
        "1,-inf,nan,\n");
}

TEST_CASE("metrics_log: precision 0 writes the shortest text that reads back") {
  temp_dir d;
  cg::metrics_log log(d / "m.csv", {"f", "d"}, {.precision = 0});
  log.write({0.1f, 0.1});
  log.write({1.f / 3, 1.0 / 3});
  log.close();
  CHECK(read_file(d / "m.csv") == "f,d\n0.1,0.1\n0.33333334,0.3333333333333333\n");
  // As %g with 3 digits.
  cg::metrics_log three(d / "g.csv", {"v"}, {.precision = 3});
  three.write({1234567.0});
  three.write({0.000123456});
  three.close();
  CHECK(read_file(d / "g.csv") == "v\n1.23e+06\n0.000123\n");
}

TEST_CASE("metrics_log: quoting of names and fields, and reading them back") {
  CHECK(cg::csv_field("plain") == "plain");
  CHECK(cg::csv_field("a,b") == "\"a,b\"");
  CHECK(cg::csv_field("say \"x\"") == "\"say \"\"x\"\"\"");
  CHECK(cg::csv_field("two\nlines") == "\"two\nlines\"");
  CHECK(cg::csv_field("") == "");
  CHECK(cg::csv_fields("a,\"b,c\",,\"d \"\"e\"\"\"") == std::vector<std::string>{"a", "b,c", "", "d \"e\""});
  CHECK(cg::csv_fields("") == std::vector<std::string>{""});
  CHECK_THROWS_WITH(cg::csv_fields("a,\"b"), Catch::Contains("not closed"));
  CHECK_THROWS_WITH(cg::csv_fields("\"b\"x,c"), Catch::Contains("followed by more than a comma"));

  temp_dir d;
  {
    cg::metrics_log log(d / "q.csv", {"epoch", "loss, train", "acc \"held-out\""});
    log.write({1, 0.5, 0.25});
  }
  CHECK(read_file(d / "q.csv") == "epoch,\"loss, train\",\"acc \"\"held-out\"\"\"\n1,0.5,0.25\n");
  // Appending checks the header through the same quoting.
  cg::metrics_log again(d / "q.csv", {"epoch", "loss, train", "acc \"held-out\""}, {.append = true});
  again.write({2, 0.25, 0.5});
  again.close();
  CHECK(read_file(d / "q.csv") == "epoch,\"loss, train\",\"acc \"\"held-out\"\"\"\n1,0.5,0.25\n2,0.25,0.5\n");
}

TEST_CASE("metrics_log: append continues a log, a new log replaces it") {
  temp_dir d;
  const fs::path p = d / "loss.csv";
  {
    cg::metrics_log log(p, {"epoch", "loss"}, {.append = true});  // no file yet: a header first
    log.write({1, 0.5});
  }
  {
    cg::metrics_log log(p, {"epoch", "loss"}, {.append = true});
    log.write({2, 0.25});
  }
  CHECK(read_file(p) == "epoch,loss\n1,0.5\n2,0.25\n");
  // A row cut short by a run that was killed stays on a line of its own.
  write_file(p, "epoch,loss\n1,0.5\n2,0.2");
  {
    cg::metrics_log log(p, {"epoch", "loss"}, {.append = true});
    log.write({3, 0.125});
  }
  CHECK(read_file(p) == "epoch,loss\n1,0.5\n2,0.2\n3,0.125\n");
  // An empty file is started like a missing one.
  write_file(p, "");
  { cg::metrics_log log(p, {"epoch", "loss"}, {.append = true}); }
  CHECK(read_file(p) == "epoch,loss\n");
  // Without append, the file is replaced.
  write_file(p, "epoch,loss\n1,0.5\n");
  { cg::metrics_log log(p, {"epoch", "loss"}); }
  CHECK(read_file(p) == "epoch,loss\n");
  // Other columns: not appended to.
  write_file(p, "epoch,loss\n1,0.5\n");
  CHECK_THROWS_AS(cg::metrics_log(p, {"epoch", "loss", "acc"}, {.append = true}), std::runtime_error);
  CHECK_THROWS_WITH(cg::metrics_log(p, {"epoch", "loss", "acc"}, {.append = true}),
                    Catch::Contains(p.string()) && Catch::Contains("has the columns epoch,loss, not epoch,loss,acc"));
  CHECK(read_file(p) == "epoch,loss\n1,0.5\n");  // left as it was
  write_file(p, "\"epoch,loss\n");               // not even CSV
  CHECK_THROWS_WITH(cg::metrics_log(p, {"epoch", "loss"}, {.append = true}), Catch::Contains("cannot append to it"));
}

TEST_CASE("metrics_log: errors name the file or the columns") {
  temp_dir d;
  const fs::path nowhere = d / "no such folder" / "m.csv";
  CHECK_THROWS_AS(cg::metrics_log(nowhere, {"a"}), std::runtime_error);
  CHECK_THROWS_WITH(cg::metrics_log(nowhere, {"a"}),
                    Catch::Contains("cannot open " + nowhere.string()) && Catch::Contains("No such file or directory"));
  CHECK_THROWS_WITH(cg::metrics_log(d / "m.csv", {}), Catch::Contains("no columns"));
  CHECK_THROWS_WITH(cg::metrics_log(d / "m.csv", {"a", ""}), Catch::Contains("column 1 has no name"));
  CHECK_THROWS_WITH(cg::metrics_log(d / "m.csv", {"a", "b", "a"}), Catch::Contains("column \"a\" is named twice"));

  cg::metrics_log log(d / "m.csv", {"epoch", "loss"});
  CHECK_THROWS_AS(log.write({1}), std::invalid_argument);
  CHECK_THROWS_WITH(log.write({1, 2.0, 3.0}), Catch::Contains("3 values for the 2 columns epoch,loss"));
  CHECK(read_file(d / "m.csv") == "epoch,loss\n");  // nothing of a bad row
  cg::metrics_log moved = std::move(log);
  moved.write({1, 2.0});
  CHECK(moved.path() == d / "m.csv");
  CHECK(moved.columns() == std::vector<std::string>{"epoch", "loss"});
  moved.close();
  moved.close();  // twice: nothing
  CHECK_THROWS_WITH(moved.write({2, 3.0}), Catch::Contains("is closed"));
  CHECK(read_file(d / "m.csv") == "epoch,loss\n1,2\n");
}

// ---- progress ----

TEST_CASE("progress: plain lines off a terminal, with rates and ETA from the clock") {
  temp_stream out;
  double now = 10;  // seconds, from any origin
  {
    cg::progress bar(
        100, {.label = "epoch", .examples_per_step = 1000, .lines = 4, .out = out.f, .clock = [&] { return now; }});
    CHECK_FALSE(bar.terminal());  // a file is not a terminal
    for (long epoch = 1; epoch <= 100; ++epoch) {
      now = 10 + epoch;  // a second per epoch
      bar.update(epoch, {cg::metric("loss", 1.0 / epoch), cg::percent("acc", epoch / 100.0)});
    }
    CHECK(bar.elapsed() == 100);
  }
  CHECK(out.text() ==
        "epoch   1/100  loss 1.0000  acc   1.0%  1.0k ex/s  ETA 1:39\n"
        "epoch  25/100  loss 0.0400  acc  25.0%  1.0k ex/s  ETA 1:15\n"
        "epoch  50/100  loss 0.0200  acc  50.0%  1.0k ex/s  ETA 0:50\n"
        "epoch  75/100  loss 0.0133  acc  75.0%  1.0k ex/s  ETA 0:25\n"
        "epoch 100/100  loss 0.0100  acc 100.0%  1.0k ex/s  elapsed 1:40\n");
}

TEST_CASE("progress: a resumed run counts its own steps, and skipped updates still print") {
  temp_stream out;
  double now = 0;
  cg::progress bar(300, {.label = "epoch", .start = 150, .lines = 3, .out = out.f, .clock = [&] { return now; }});
  for (long epoch = 157; epoch <= 300; epoch += 7) {  // not every step is shown, nor the multiples of 50
    now = (epoch - 150) * 0.5;
    bar.update(epoch, {cg::metric("loss", 0.25, 2)});
  }
  now = 75;
  bar.update(300, {cg::metric("loss", 0.1, 2)});
  // Lines: the first; on crossing 200 (at 206) and 250 (at 255); the last. The rate is 2 steps/s
  // (7 steps in 3.5 s at 157, counted from 150); at 206, 94 more steps at that rate take 47 s.
  CHECK(out.text() ==
        "epoch 157/300  loss 0.25  2 steps/s  ETA 1:12\n"
        "epoch 206/300  loss 0.25  2 steps/s  ETA 0:47\n"
        "epoch 255/300  loss 0.25  2 steps/s  ETA 0:23\n"
        "epoch 300/300  loss 0.10  2 steps/s  elapsed 1:15\n");
}

TEST_CASE("progress: a bar on a terminal, redrawn in place, at most every redraw_seconds") {
  temp_stream out;
  double now = 0;
  {
    cg::progress bar(10, {.label = "epoch",
                          .examples_per_step = 50,
                          .width = 10,
                          .redraw_seconds = 1,
                          .out = out.f,
                          .terminal = true,
                          .clock = [&] { return now; }});
    CHECK(bar.terminal());
    now = 0.5;
    bar.update(1, {cg::metric("loss", 12345.678, 1)});  // the first: drawn
    now = 0.9;
    bar.update(2, {cg::metric("loss", 2.5, 1)});  // too soon: not drawn
    now = 2.0;
    bar.update(5, {cg::metric("loss", 2.5, 1)});  // drawn, shorter: blanked to the old width
    now = 2.1;
    bar.update(10, {cg::metric("loss", 1e30, 1)});  // the last: always drawn
    bar.finish();
    bar.finish();  // once only
  }                // the destructor adds nothing after finish()
  const std::string first = "\repoch  1/10 [#.........]  loss 12345.7  100 ex/s  ETA 0:05";
  const std::string second = "\repoch  5/10 [#####.....]  loss 2.5  125 ex/s  ETA 0:02";
  const std::string last = "\repoch 10/10 [##########]  loss 1.0e+30  238 ex/s  elapsed 0:02";
  CHECK(out.text() == first + second + std::string(first.size() - second.size(), ' ') + last + "\n");
}

TEST_CASE("progress: the destructor ends an open bar, and nothing is drawn before the first update") {
  temp_stream out;
  { cg::progress bar(3, {.out = out.f, .terminal = true}); }
  CHECK(out.text().empty());
  {
    cg::progress bar(3, {.out = out.f, .terminal = true, .clock = [] { return 0.0; }});
    bar.update(1);
  }
  CHECK(out.text() == "\rstep 1/3 [##########....................]\n");
}

TEST_CASE("progress: bad steps and options are errors") {
  temp_stream out;
  cg::progress bar(10, {.start = 2, .out = out.f});
  CHECK_THROWS_WITH(bar.update(11), Catch::Contains("step 11 is outside the bar's 2..10"));
  CHECK_THROWS_WITH(bar.update(1), Catch::Contains("step 1 is outside the bar's 2..10"));
  CHECK_THROWS_WITH(cg::progress(5, {.start = 6}), Catch::Contains("start 6 and total 5"));
  CHECK_THROWS_WITH(cg::progress(5, {.width = 0}), Catch::Contains("width 0"));
  CHECK_THROWS_WITH(cg::progress(5, {.lines = -1}), Catch::Contains("lines -1"));
  CHECK_THROWS_WITH(cg::progress(5, {.out = nullptr}), Catch::Contains("no output stream"));
  CHECK(out.text().empty());
}

TEST_CASE("progress: short numbers and clock times") {
  CHECK(cg::short_number(12) == "12");
  CHECK(cg::short_number(999.4) == "999");
  CHECK(cg::short_number(12345.6) == "12.3k");
  CHECK(cg::short_number(2.5e6) == "2.50M");
  CHECK(cg::short_number(3.25e9) == "3.25G");
  CHECK(cg::clock_time(0) == "0:00");
  CHECK(cg::clock_time(83.4) == "1:23");
  CHECK(cg::clock_time(3723) == "1:02:03");
  CHECK(cg::clock_time(-1) == "?");
  CHECK(cg::clock_time(std::numeric_limits<double>::infinity()) == "?");
}

// ---- plots ----

TEST_CASE("plot_curves: the gnuplot script of a metrics log") {
  temp_dir d;
  const fs::path csv = d / "loss.csv", svg = d / "loss.svg";
  write_file(csv, "epoch,train_loss,train_acc,heldout_acc\n1,1.1,0.3,0.25\n2,nan,0.5,0.75\n");
  const std::string script = cg::curves_script(csv,
                                               {.curves = {{"train_loss", "train loss"},
                                                           {"train_acc", "train accuracy", true},
                                                           {"heldout_acc", "held-out accuracy", true}},
                                                .ylabel = "cross-entropy loss",
                                                .y2label = "accuracy",
                                                .log_y = true,
                                                .y2_range = cg::axis_range{0, 1}},
                                               svg);
  CHECK(script ==
        "set terminal svg size 800,480 dynamic noenhanced background rgb 'white'\n"
        "set encoding utf8\n"
        "set output '" +
            svg.string() +
            "'\n"
            "set datafile separator ','\n"
            "set key outside top center horizontal\n"
            "set grid\n"
            "set xlabel 'epoch'\n"
            "set ylabel 'cross-entropy loss'\n"
            "set logscale y\n"
            "set ytics nomirror\n"
            "set y2tics\n"
            "set y2label 'accuracy'\n"
            "set y2range [0:1]\n"
            "plot '" +
            csv.string() +
            "' using 1:2 skip 1 with lines lw 2 title 'train loss', \\\n"
            "     '' using 1:3 skip 1 axes x1y2 with lines lw 2 title 'train accuracy', \\\n"
            "     '' using 1:4 skip 1 axes x1y2 with lines lw 2 title 'held-out accuracy'\n");
  // Another x column, titles from the column names, a PNG, quotes in texts.
  const std::string png = cg::curves_script(
      csv,
      {.x = "train_acc", .curves = {{"heldout_acc"}}, .title = "it's \"held-out\"\nacc", .width = 300, .height = 200},
      d / "acc.PNG");
  CHECK_THAT(png, Catch::StartsWith("set terminal pngcairo size 300,200 noenhanced background rgb 'white'\n"));
  CHECK_THAT(png, Catch::Contains("set title 'it''s \"held-out\" acc'\n"));
  CHECK_THAT(png, Catch::Contains("set xlabel 'train_acc'\n"));
  CHECK_THAT(png, Catch::Contains("using 3:4 skip 1 with lines lw 2 title 'heldout_acc'\n"));
  CHECK_THAT(png, !Catch::Contains("y2"));
}

TEST_CASE("plot_curves: bad input is an error before gnuplot runs") {
  temp_dir d;
  const fs::path csv = d / "loss.csv";
  write_file(csv, "epoch,loss\n1,0.5\n");
  CHECK_THROWS_WITH(cg::curves_script(csv, {.curves = {{"acc"}}}, d / "a.svg"),
                    Catch::Contains("has no column \"acc\" (its columns: epoch,loss)"));
  CHECK_THROWS_WITH(cg::curves_script(csv, {.x = "step", .curves = {{"loss"}}}, d / "a.svg"),
                    Catch::Contains("no column \"step\""));
  CHECK_THROWS_WITH(cg::curves_script(csv, {}, d / "a.svg"), Catch::Contains("no curves"));
  CHECK_THROWS_WITH(cg::curves_script(csv, {.curves = {{"loss"}}}, d / "a.jpg"),
                    Catch::Contains("the image must end in .svg or .png"));
  CHECK_THROWS_WITH(cg::curves_script(csv, {.curves = {{"loss"}}, .width = 0}, d / "a.svg"),
                    Catch::Contains("size 0x480"));
  CHECK_THROWS_WITH(cg::curves_script(csv, {.curves = {{"loss"}}, .y_range = cg::axis_range{1, 1}}, d / "a.svg"),
                    Catch::Contains("y range [1, 1] (need finite min < max)"));
  CHECK_THROWS_AS(cg::curves_script(d / "missing.csv", {.curves = {{"loss"}}}, d / "a.svg"), std::runtime_error);
  CHECK_THROWS_WITH(cg::plot_curves(d / "missing.csv", {.curves = {{"loss"}}}, d / "a.svg"),
                    Catch::Contains("cannot read the header of"));
}

TEST_CASE("plot_heatmap: the gnuplot script of a labelled matrix, NaN and infinities blank") {
  temp_dir d;
  const fs::path svg = d / "attention.svg";
  const std::vector<double> w = {0.125, 0.875, std::nan(""), 0.5, -std::numeric_limits<double>::infinity(), 1.0 / 3};
  const cg::heatmap_plot h{.rows = 2,
                           .cols = 3,
                           .row_labels = {"x", "y_1"},
                           .col_labels = {"a", "'", "\t"},
                           .title = "attention",
                           .xlabel = "input",
                           .ylabel = "output",
                           .range = cg::axis_range{0, 1}};
  const std::string script = cg::heatmap_script(w, h, svg);
  CHECK(script ==
        "set terminal svg size 360,240 dynamic noenhanced background rgb 'white'\n"
        "set encoding utf8\n"
        "set output '" +
            svg.string() +
            "'\n"
            "set title 'attention'\n"
            "set xlabel 'input'\n"
            "set ylabel 'output'\n"
            "set xrange [-0.5:2.5]\n"
            "set yrange [1.5:-0.5]\n"
            "set xtics nomirror ('a' 0, '''' 1, ' ' 2)\n"
            "set ytics nomirror ('x' 0, 'y_1' 1)\n"
            "set size ratio -1\n"
            "set tics scale 0\n"
            "unset key\n"
            "set palette defined (0 '#440154', 0.25 '#3b528b', 0.5 '#21918c', 0.75 '#5ec962', 1 '#fde725')\n"
            "set cbrange [0:1]\n"
            "$values << EOD\n"
            "0.125 0.875 NaN\n"
            "0.5 NaN 0.333333333\n"
            "EOD\n"
            "plot $values matrix with image pixels\n");
  // Float values: as the doubles they convert to (1/3f is 0.333333343); numbered ticks without
  // labels; long column labels turn.
  const std::vector<float> wf(w.begin(), w.end());
  CHECK(cg::heatmap_script(wf, h, svg) == cg::heatmap_script(std::vector<double>(wf.begin(), wf.end()), h, svg));
  CHECK_THAT(cg::heatmap_script(wf, h, svg), Catch::Contains("0.5 NaN 0.333333343\n"));
  const std::string numbered = cg::heatmap_script(w, {.rows = 2, .cols = 3}, d / "n.svg");
  CHECK_THAT(numbered, Catch::Contains("set xtics nomirror 0,1,2\nset ytics nomirror 0,1,1\n"));
  CHECK_THAT(numbered, !Catch::Contains("cbrange"));
  const std::string turned =
      cg::heatmap_script(std::vector<double>(2), {.rows = 1, .cols = 2, .col_labels = {"long", "b"}}, d / "t.png");
  CHECK_THAT(turned, Catch::Contains("set xtics nomirror rotate by 60 right ('long' 0, 'b' 1)\n"));
}

TEST_CASE("plot_heatmap: bad input is an error before gnuplot runs") {
  temp_dir d;
  const std::vector<double> six(6, 0.5);
  CHECK_THROWS_WITH(cg::heatmap_script(six, {.rows = 2, .cols = 3, .row_labels = {"a", "b", "c"}}, d / "h.svg"),
                    Catch::Contains("3 row labels for 2 rows"));
  CHECK_THROWS_WITH(cg::heatmap_script(six, {.rows = 2, .cols = 3, .col_labels = {"a"}}, d / "h.svg"),
                    Catch::Contains("1 column labels for 3 columns"));
  CHECK_THROWS_WITH(cg::heatmap_script(six, {.rows = 2, .cols = 2}, d / "h.svg"),
                    Catch::Contains("6 values for a 2x2 matrix (4)"));
  CHECK_THROWS_WITH(cg::heatmap_script(six, {.rows = 0, .cols = 6}, d / "h.svg"),
                    Catch::Contains("a 0x6 matrix (need at least 1x1)"));
  CHECK_THROWS_WITH(
      cg::heatmap_script(six, {.rows = 2, .cols = 3, .range = cg::axis_range{0, std::nan("")}}, d / "h.svg"),
      Catch::Contains("cb range [0, nan]"));
  CHECK_THROWS_WITH(cg::plot_heatmap(six, {.rows = 2, .cols = 3}, d / "h.txt"), Catch::Contains(".svg or .png"));
}

TEST_CASE("plot_heatmaps: panels side by side, each with its own labels; bad panels are errors") {
  temp_dir d;
  std::vector<cg::heatmap> maps(3);
  maps[0] = {{0.25, 0.75}, {.rows = 1, .cols = 2, .row_labels = {"2"}, .col_labels = {"a", "b"}, .title = "first"}};
  maps[1] = {{1, 0, 0, 1}, {.rows = 2, .cols = 2, .range = cg::axis_range{0, 1}}};
  maps[2] = {{0.5}, {.rows = 1, .cols = 1, .title = "third"}};
  const std::string s = cg::heatmaps_script(maps, {.columns = 2, .title = "attention"}, d / "a.svg");
  CHECK_THAT(s, Catch::StartsWith("set terminal svg size 520,400 "));  // 2 x (200 + 30 * 2) by 40 + 2 x (120 + 30 * 2)
  CHECK_THAT(s, Catch::Contains("set multiplot layout 2,2 title 'attention'\nset title 'first'\n"));
  CHECK_THAT(s, Catch::Contains("set xtics nomirror ('a' 0, 'b' 1)\n"));
  CHECK_THAT(s, Catch::Contains("1 0\n0 1\nEOD\n"));
  CHECK_THAT(s, Catch::Contains("unset title\n"));       // the second panel has none: not the first's
  CHECK_THAT(s, Catch::Contains("set autoscale cb\n"));  // the third's colours: its own values'
  CHECK_THAT(s, Catch::EndsWith("plot $values matrix with image pixels\nunset multiplot\n"));
  CHECK(std::count(s.begin(), s.end(), '$') == 6);  // three data blocks, three plots
  CHECK_THROWS_WITH(cg::heatmaps_script({}, {}, d / "a.svg"), Catch::Contains("plot_heatmaps: no heatmaps"));
  CHECK_THROWS_WITH(cg::heatmaps_script(maps, {.columns = 0}, d / "a.svg"), Catch::Contains("0 columns"));
  maps[1].plot.rows = 3;
  CHECK_THROWS_WITH(cg::heatmaps_script(maps, {}, d / "a.svg"),
                    Catch::Contains("plot_heatmaps: 4 values for a 3x2 matrix (6)"));
}

TEST_CASE("plots: a missing gnuplot is reported, not thrown, and a failing one leaves no image") {
  temp_dir d;
  const fs::path csv = d / "loss.csv", svg = d / "loss.svg";
  write_file(csv, "epoch,loss\n1,0.5\n2,0.25\n");
  const cg::plot_result none =
      cg::plot_curves(csv, {.curves = {{"loss"}}}, svg, {.gnuplot = (d / "bin" / "gnuplot").string()});
  CHECK_FALSE(none);
  CHECK(none.status == cg::plot_status::gnuplot_missing);
  CHECK_THAT(none.message,
             Catch::Contains("not found, " + svg.string() + " not written (Debian: apt install gnuplot-nox)"));
  const cg::plot_result not_on_path =
      cg::plot_heatmap(std::vector<float>{1, 2}, {.rows = 1, .cols = 2}, svg, {.gnuplot = "ctgraph-no-such-gnuplot"});
  CHECK(not_on_path.status == cg::plot_status::gnuplot_missing);
  CHECK_THAT(not_on_path.message, Catch::StartsWith("ctgraph-no-such-gnuplot not found on PATH"));
  CHECK_FALSE(fs::exists(svg));

  // A gnuplot that fails (here: `false`) is reported with its exit code, and a stale image goes.
  REQUIRE(cg::find_program("false"));
  write_file(svg, "stale");
  const cg::plot_result failed = cg::plot_curves(csv, {.curves = {{"loss"}}}, svg, {.gnuplot = "false"});
  CHECK(failed.status == cg::plot_status::gnuplot_failed);
  CHECK_THAT(failed.message, Catch::Contains("gnuplot failed, " + svg.string() + " not written: exit code 1"));
  CHECK_FALSE(fs::exists(svg));
  // Its output is quoted: a "gnuplot" that prints an error.
  const fs::path fake = d / "fake-gnuplot";
  write_file(fake, "#!/bin/sh\necho \"line 3: unknown terminal\" >&2\nexit 2\n");
  fs::permissions(fake, fs::perms::owner_all);
  const cg::plot_result said = cg::plot_curves(csv, {.curves = {{"loss"}}}, svg, {.gnuplot = fake.string()});
  CHECK(said.status == cg::plot_status::gnuplot_failed);
  CHECK_THAT(said.message, Catch::EndsWith("exit code 2:\nline 3: unknown terminal"));
}

TEST_CASE("find_program: a name on PATH, or a path") {
  const auto sh = cg::find_program("sh");
  REQUIRE(sh);
  CHECK(sh->filename() == "sh");
  CHECK(cg::find_program(sh->string()) == sh);
  CHECK_FALSE(cg::find_program("ctgraph-no-such-program"));
  CHECK_FALSE(cg::find_program("/no/such/program"));
  CHECK_FALSE(cg::find_program(""));
  CHECK_FALSE(cg::find_program("/tmp"));  // a folder is not a program
}

TEST_CASE("plots: images through the installed gnuplot, NaN values included") {
  if (!cg::find_program("gnuplot")) {
    WARN("gnuplot is not installed: no image drawn (apt install gnuplot-nox)");
    return;
  }
  temp_dir d;
  const fs::path csv = d / "loss.csv";
  {
    cg::metrics_log log(csv, {"epoch", "loss", "acc"});
    log.write({1, 1.5, 0.25});
    log.write({2, std::nan(""), 0.5});  // a missing point, not a failed plot
    log.write({3, 0.5, std::numeric_limits<double>::infinity()});
    log.write({4, 0.25, 0.75});
  }
  const cg::plot_result curves =
      cg::plot_curves(csv, {.curves = {{"loss"}, {"acc", "accuracy", true}}, .log_y = true}, d / "loss.svg");
  INFO(curves.message);
  REQUIRE(curves);
  CHECK(curves.message.empty());
  CHECK_THAT(read_file(d / "loss.svg"), Catch::Contains("<svg"));

  const std::vector<float> w = {0.1f, 0.9f, std::nanf(""), 0.5f, 0.5f, 0.f};
  const cg::plot_result heat = cg::plot_heatmap(
      w, {.rows = 2, .cols = 3, .row_labels = {"x", "y"}, .col_labels = {"a", "b", "c"}, .range = cg::axis_range{0, 1}},
      d / "attention.png");
  INFO(heat.message);
  REQUIRE(heat);
  CHECK(read_file(d / "attention.png").substr(1, 3) == "PNG");
  std::vector<cg::heatmap> maps(2);
  maps[0] = {{0.25, 0.75}, {.rows = 1, .cols = 2, .row_labels = {"2"}, .col_labels = {"a", "b"}, .title = "one"}};
  maps[1] = {{1, 0, 0, 1}, {.rows = 2, .cols = 2, .title = "two"}};
  const cg::plot_result panels = cg::plot_heatmaps(maps, {.title = "both"}, d / "panels.svg");
  INFO(panels.message);
  REQUIRE(panels);
  CHECK_THAT(read_file(d / "panels.svg"), Catch::Contains("<svg") && Catch::Contains("two"));
  // A script gnuplot rejects: reported with gnuplot's own words.
  const cg::plot_result bad = cg::run_gnuplot("plot sin(x) with nonsense\n", d / "bad.svg");
  CHECK(bad.status == cg::plot_status::gnuplot_failed);
  CHECK_THAT(bad.message, Catch::Contains("unrecognized plot type"));
}
