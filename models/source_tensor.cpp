// The one converter of checkpoint tensors (models/source_tensor.h): dense
// values here, GGML blocks and packed 4-bit layers in their own files.
#include "models/source_tensor.h"

#include <cstring>
#include <stdexcept>

#include "kernels/fp16.h"
#include "kernels/matmul.h"
#include "models/gguf_import.h"

namespace nibble {

namespace {

// An f32 copy of any imported tensor (norm vectors must be f32).
Tensor to_f32(Model& model, const Tensor& t) {
    Tensor out =
        make_owned_tensor(model, t.name, make_layout(WeightFormat::f32, t.rows(), t.cols()));
    float* dst = reinterpret_cast<float*>(writable(out));
    for (int64_t r = 0; r < t.rows(); ++r) dequantize_row(t.view, r, dst + r * t.cols());
    return out;
}

// bf16 is the top half of an f32; f16 holds it exactly when it round-trips.
bool bf16_fits_f16(const uint8_t* data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, data + 2 * i, 2);
        const uint32_t bits = uint32_t(b) << 16;
        float v;
        std::memcpy(&v, &bits, 4);
        if (fp16_to_fp32(fp32_to_fp16(v)) != v) return false;
    }
    return true;
}

Tensor import_bf16(Model& model, const SourceTensor& s) {
    const size_t n = size_t(s.rows) * size_t(s.cols);
    const bool fits_f16 = bf16_fits_f16(s.data, n);
    Tensor out = make_owned_tensor(
        model, s.name,
        make_layout(fits_f16 ? WeightFormat::f16 : WeightFormat::f32, s.rows, s.cols));
    uint8_t* dst = writable(out);
    for (size_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, s.data + 2 * i, 2);
        const uint32_t bits = uint32_t(b) << 16;
        if (fits_f16) {
            float v;
            std::memcpy(&v, &bits, 4);
            const uint16_t h = fp32_to_fp16(v);
            std::memcpy(dst + 2 * i, &h, 2);
        } else {
            std::memcpy(dst + 4 * i, &bits, 4);
        }
    }
    return out;
}

// f32 or f16: a view of the source bytes, or a copy when they are misaligned
// (a GGUF general.alignment below the element size).
Tensor import_ieee(Model& model, const SourceTensor& s) {
    const bool is_f32 = s.encoding == SourceEncoding::f32;
    const size_t element = is_f32 ? 4 : 2;
    const PackedLayout layout =
        make_layout(is_f32 ? WeightFormat::f32 : WeightFormat::f16, s.rows, s.cols);
    if (reinterpret_cast<uintptr_t>(s.data) % element == 0) {  // zero copy
        Tensor out;
        out.name = s.name;
        out.view.layout = layout;
        out.view.data = s.data;
        return out;
    }
    Tensor out = make_owned_tensor(model, s.name, layout);
    std::memcpy(writable(out), s.data, size_t(s.rows) * size_t(s.cols) * element);
    return out;
}

Tensor import_packed(Model& model, const SourceTensor& s) {
    const PackedSource& p = *s.packed;
    return import_packed_4bit(model, s.name, p.config, s.rows, s.cols, *p.qweight, *p.qzeros,
                              *p.scales, p.g_idx);
}

}  // namespace

Tensor convert_tensor(Model& model, const SourceTensor& source, bool need_f32, bool repack,
                      const MappedFile* file) {
    Tensor out;
    switch (source.encoding) {
        case SourceEncoding::f32:
        case SourceEncoding::f16:
            out = import_ieee(model, source);
            break;
        case SourceEncoding::bf16:
            out = import_bf16(model, source);
            break;
        case SourceEncoding::ggml_blocks:
            out = import_ggml_blocks(model, source.name, source.ggml_type, source.rows, source.cols,
                                     source.data, repack && !need_f32, file);
            break;
        case SourceEncoding::packed_4bit:
            out = import_packed(model, source);
            break;
    }
    if (need_f32 && out.format() != WeightFormat::f32) out = to_f32(model, out);
    return out;
}

Tensor defer_tensor(Model& model, const std::shared_ptr<const MappedFile>& file,
                    const SourceTensor& source, bool need_f32) {
    if (need_f32 || source.encoding == SourceEncoding::packed_4bit) {
        return convert_tensor(model, source, need_f32);
    }
    PackedLayout layout;
    switch (source.encoding) {
        case SourceEncoding::f32:
        case SourceEncoding::f16:
            layout = make_layout(
                source.encoding == SourceEncoding::f32 ? WeightFormat::f32 : WeightFormat::f16,
                source.rows, source.cols);
            break;
        case SourceEncoding::bf16: {
            const bool fits_f16 = bf16_fits_f16(source.data, size_t(source.rows * source.cols));
            file->release(source.data, source.n_bytes);
            layout = make_layout(fits_f16 ? WeightFormat::f16 : WeightFormat::f32, source.rows,
                                 source.cols);
            break;
        }
        case SourceEncoding::ggml_blocks:
            layout = ggml_blocks_layout(source.name, source.ggml_type, source.rows, source.cols);
            break;
        case SourceEncoding::packed_4bit:
            break;
    }
    auto deferred = std::make_shared<DeferredTensor>();
    SourceTensor dense = source;
    dense.packed = nullptr;
    deferred->fetch = [dense](std::vector<std::shared_ptr<const void>>& keep) {
        Model owner;  // only its storage is kept
        const Tensor t = convert_tensor(owner, dense, false);
        keep.insert(keep.end(), owner.storage.begin(), owner.storage.end());
        return t.view;
    };
    const uint8_t* data = source.data;
    const size_t n_bytes = source.n_bytes;
    deferred->release = [file, data, n_bytes] { file->release(data, n_bytes); };
    Tensor out;
    out.name = source.name;
    out.view.layout = layout;
    out.deferred = std::move(deferred);
    return out;
}

}  // namespace nibble
